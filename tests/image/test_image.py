"""The container image, checked from its own files (see conftest.py): it runs as a user without
privileges, keeps the engine's refusal of AUTH_DISABLED off loopback, and its `migrate`, `serve`
(default command) and `workers` complete executions triggered over HTTP on PostgreSQL + Redis."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.image.conftest import ImageConfig, Processes, image_under_test
from tests.support.databases import fresh_database
from tests.support.process import free_port, wait_execution
from tests.support.servers import RedisServer

pytestmark = [
    pytest.mark.image,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        image_under_test() is None,
        reason="run by `make test-image` (builds the image, sets WORKFLOW_ENGINE_TEST_IMAGE)",
    ),
]

TOKEN = "image-test-token"
WORKFLOW = {
    "name": "from-the-image",
    "steps": [
        {"key": "greet", "type": "transform", "config": {"output": "Hello {{ input.name }}"}},
        {"key": "pause", "type": "delay", "config": {"ms": 200}},
        {"key": "done", "type": "transform", "config": {"output": "{{ steps.greet.output }}!"}},
    ],
}


def test_the_image_runs_serve_by_default_as_a_user_without_privileges(
    image_config: ImageConfig,
) -> None:
    user, _, group = image_config.user.partition(":")
    assert user, "the image sets no USER: it would run as root"
    assert user not in ("root", "0") and group not in ("root", "0"), image_config.user
    assert user.isdigit(), "a numeric USER lets Kubernetes' runAsNonRoot check it"
    assert image_config.entrypoint == ["workflow-engine"]
    assert image_config.cmd == ["serve"]
    assert image_config.env["HOST"] == "0.0.0.0"
    assert "3000/tcp" in image_config.exposed_ports


def test_auth_disabled_is_still_refused_on_the_images_host(run_image: Processes) -> None:
    env = {"AUTH_DISABLED": "true", "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x"}
    serve = run_image.start("serve-auth-disabled", env)
    assert serve.wait_exit(60) == 2
    assert "AUTH_DISABLED is refused when binding to 0.0.0.0" in serve.logs()


@pytest.fixture
def services() -> Iterator[tuple[str, str]]:
    """A fresh database on the machine's PostgreSQL and a private Redis (noeviction)."""
    with fresh_database("we_image") as database_url:
        redis = RedisServer().start()
        try:
            # With a role: the image's user has no PostgreSQL role of its name, unlike root here.
            yield database_url.replace("postgresql://", "postgresql://postgres@", 1), redis.url
        finally:
            redis.stop()


def test_migrate_serve_and_workers_from_the_image_complete_executions(
    run_image: Processes, image_config: ImageConfig, services: tuple[str, str]
) -> None:
    database_url, redis_url = services
    port = free_port()
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "API_TOKEN": TOKEN,
        # The image binds 0.0.0.0; on a shared machine the test keeps to loopback.
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SHUTDOWN_GRACE_MS": "5000",
    }
    migrate = run_image.start("migrate", env, ["migrate"])
    assert migrate.wait_exit(120) == 0, migrate.logs()
    assert "Database is up to date" in migrate.stdout()

    serve = run_image.start("serve", env)  # the image's default command
    url = f"http://127.0.0.1:{port}"
    serve.wait_http(f"{url}/api/ready")
    assert serve.uid() == int(image_config.user.partition(":")[0])
    workers = [run_image.start(f"workers{n}", env, ["workers"]) for n in range(2)]
    for process in workers:
        process.wait_output("[Workflow Engine] All systems ready")
        assert process.uid() == int(image_config.user.partition(":")[0])

    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10, trust_env=False) as client:
        ready = client.get("/api/ready").json()
        assert ready == {
            "status": "ready",
            "mode": "distributed",
            "checks": {"database": "ok", "redis": "ok"},
        }
        # The UI's browser JavaScript (fetched from npm at set-up) is in the image.
        script = client.get("/static/vendor/socket.io.min.js")
        assert script.status_code == 200 and len(script.content) > 10_000
        charts = client.get("/static/vendor/uPlot.iife.min.js")
        assert charts.status_code == 200 and len(charts.content) > 10_000
        assert client.get("/static/vendor/uPlot.min.css").status_code == 200
        assert client.post("/api/workflows", json=WORKFLOW).status_code == 201
        ids = []
        for n in range(6):
            response = client.post(
                "/api/workflows/from-the-image/execute", json={"input": {"name": f"image{n}"}}
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["executionId"])
        for n, execution_id in enumerate(ids):
            body = wait_execution(client, execution_id, timeout=60)
            assert body["status"] == "completed", body
            assert body["output"] == f"Hello image{n}!"
            assert [s["stepKey"] for s in body["steps"]] == ["greet", "pause", "done"]

    for process in workers:
        assert process.terminate(30) == 0, process.logs()
        assert "[Workflow Engine] Stopped" in process.stdout()
    assert serve.terminate(30) == 0, serve.logs()
