"""The deployment files name things the engine defines: commands of the CLI, routes of the app,
settings of the `Settings` model, their default ports. These tests read both sides, so renaming
one without the other fails here, not in a cluster."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest
import typer

from tests.deploy.conftest import (
    KUBERNETES,
    REPO,
    dockerfile_env,
    dockerfile_instructions,
    engine_containers,
    engine_services,
    final_stage,
    load_yaml_documents,
    named,
    of_kind,
    pod_spec,
)
from workflow_engine.api.middleware import OPEN_PATHS
from workflow_engine.app import create_app
from workflow_engine.cli import app as cli_app
from workflow_engine.settings import Settings

SETTINGS = {name.upper() for name in Settings.model_fields}
DEFAULTS = Settings(_env_file=None)
# Variables that are not engine settings but are fine in an engine container's environment.
PROCESS_VARIABLES = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "LANG"}


def _cli_commands() -> set[str]:
    group = typer.main.get_command(cli_app)
    return set(group.commands)


def _get_routes() -> set[str]:
    """The app's GET routes, as its OpenAPI description lists them (the app is built, not
    started: no database is needed)."""
    app = create_app(DEFAULTS, token="drift-test")
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    return {path for path, operations in paths.items() if "get" in operations}


def _port_of(url: str) -> int:
    match = re.search(r"://[^/:]+:(\d+)", url)
    assert match, url
    return int(match.group(1))


# --- the image ----------------------------------------------------------------------------------


def test_the_image_runs_the_console_script_and_a_cli_command() -> None:
    stage = final_stage(dockerfile_instructions())
    (entrypoint,) = [json.loads(i.args) for i in stage if i.name == "ENTRYPOINT"]
    (cmd,) = [json.loads(i.args) for i in stage if i.name == "CMD"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["workflow-engine"] and "workflow-engine" in scripts
    assert cmd == ["serve"]
    assert set(cmd) <= _cli_commands()


def test_the_images_environment_is_made_of_settings_and_their_defaults() -> None:
    stage = final_stage(dockerfile_instructions())
    env = dockerfile_env(stage)
    assert set(env) - PROCESS_VARIABLES <= SETTINGS
    assert env["HOST"] == "0.0.0.0"
    assert int(env["PORT"]) == DEFAULTS.port
    assert int(env["METRICS_PORT"]) == DEFAULTS.metrics_port
    (expose,) = [i.args.split() for i in stage if i.name == "EXPOSE"]
    assert {int(p) for p in expose} == {DEFAULTS.port, DEFAULTS.metrics_port}


def test_the_manifests_run_as_the_images_user() -> None:
    stage = final_stage(dockerfile_instructions())
    (user,) = [i.args for i in stage if i.name == "USER"]
    uid, _, gid = user.partition(":")
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in load_yaml_documents(path):
            if document["kind"] in ("Deployment", "Job"):
                context = pod_spec(document)["securityContext"]
                assert context["runAsNonRoot"] is True, path.name
                assert (str(context["runAsUser"]), str(context["runAsGroup"])) == (uid, gid)


# --- docker-compose.yml -------------------------------------------------------------------------


def _compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping, so its names can be checked"
    return {key: str(value) for key, value in env.items()}


def test_compose_runs_migrate_serve_and_workers_commands(compose: dict[str, Any]) -> None:
    services = engine_services(compose)
    commands = {name: service["command"] for name, service in services.items()}
    assert commands == {"migrate": ["migrate"], "web": ["serve"], "workers": ["workers"]}
    for command in commands.values():
        assert command[0] in _cli_commands()


def test_compose_environment_names_are_settings(compose: dict[str, Any]) -> None:
    for name, service in engine_services(compose).items():
        unknown = set(_compose_env(service)) - SETTINGS
        assert not unknown, f"{name}: {unknown} are not settings of workflow_engine.settings"
        assert service["env_file"][0]["path"] == ".env"


def test_compose_ports_and_health_check_match_the_engine(compose: dict[str, Any]) -> None:
    web = compose["services"]["web"]
    env = _compose_env(web)
    port = int(env["PORT"])
    assert port == DEFAULTS.port
    assert env["HOST"] == "0.0.0.0"
    assert [int(p.split(":")[-1]) for p in web["ports"]] == [port]
    check = " ".join(web["healthcheck"]["test"])
    url = re.search(r"http://[^'\" ]+", check)
    assert url, check
    assert _port_of(url.group(0)) == port
    path = "/" + url.group(0).split("/", 3)[3]
    assert path in _get_routes() and path in OPEN_PATHS

    workers = compose["services"]["workers"]
    assert [int(p) for p in workers["expose"]] == [int(_compose_env(workers)["METRICS_PORT"])]
    assert int(_compose_env(workers)["METRICS_PORT"]) == DEFAULTS.metrics_port


def test_compose_gives_workers_time_to_hand_back(compose: dict[str, Any]) -> None:
    workers = compose["services"]["workers"]
    grace_ms = int(_compose_env(workers).get("SHUTDOWN_GRACE_MS", DEFAULTS.shutdown_grace_ms))
    stop = re.fullmatch(r"(\d+)s", workers["stop_grace_period"])
    assert stop and int(stop.group(1)) * 1000 > grace_ms
    assert workers["deploy"]["replicas"] == 2


def test_compose_services_wait_for_what_they_need(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "noeviction" in services["redis"]["command"]
    assert services["postgres"]["volumes"][0].split(":")[0] in compose["volumes"]
    for name in ("web", "workers"):
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }
    url = _compose_env(services["web"])["DATABASE_URL"]
    assert "@postgres:5432/" in url
    assert _compose_env(services["web"])["REDIS_URL"] == "redis://redis:6379"


# --- deploy/kubernetes --------------------------------------------------------------------------


def test_manifests_run_migrate_serve_and_workers(manifests: list[dict[str, Any]]) -> None:
    args = {
        workload["metadata"]["name"]: pod_spec(workload)["containers"][0]["args"]
        for workload in manifests
        if workload["kind"] in ("Deployment", "Job")
    }
    assert args == {
        "workflow-engine-migrate": ["migrate"],
        "workflow-web": ["serve"],
        "workflow-workers": ["workers"],
    }
    for command in args.values():
        assert command[0] in _cli_commands()


def test_manifest_settings_are_settings(manifests: list[dict[str, Any]]) -> None:
    config = named(manifests, "ConfigMap", "workflow-engine-config")["data"]
    secret = named(manifests, "Secret", "workflow-engine-secrets")["stringData"]
    assert set(config) <= SETTINGS, set(config) - SETTINGS
    assert set(secret) <= SETTINGS, set(secret) - SETTINGS
    assert {"API_TOKEN", "DATABASE_URL"} <= set(secret)
    assert not set(config) & set(secret)
    for container in engine_containers(manifests):
        sources = {
            ref.get("configMapRef", ref.get("secretRef", {})).get("name")
            for ref in container["envFrom"]
        }
        assert sources == {"workflow-engine-config", "workflow-engine-secrets"}
        assert {e["name"] for e in container.get("env", [])} <= SETTINGS
    # Every value is one the Settings model accepts.
    Settings(_env_file=None, **{k.lower(): v for k, v in {**config, **secret}.items()})


def test_probes_and_ports_match_the_app(manifests: list[dict[str, Any]]) -> None:
    config = named(manifests, "ConfigMap", "workflow-engine-config")["data"]
    routes = _get_routes()
    web = pod_spec(named(manifests, "Deployment", "workflow-web"))["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in web["ports"]}
    assert ports == {"http": int(config["PORT"])}
    assert int(config["PORT"]) == DEFAULTS.port
    assert web["readinessProbe"]["httpGet"]["path"] == "/api/ready"
    assert web["livenessProbe"]["httpGet"]["path"] == "/api/health"
    for probe in ("readinessProbe", "livenessProbe"):
        get = web[probe]["httpGet"]
        assert get["path"] in routes, f"{get['path']} is not a GET route of the app"
        assert get["path"] in OPEN_PATHS, f"{get['path']} needs a token: a probe has none"
        assert get["port"] in ports
    # The readiness route answers within its own 2 s timeout; the probe waits longer.
    assert web["readinessProbe"]["timeoutSeconds"] > 2

    service = named(manifests, "Service", "workflow-web")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    assert service["spec"]["selector"] == web_selector(manifests)

    workers = pod_spec(named(manifests, "Deployment", "workflow-workers"))["containers"][0]
    metrics = {p["name"]: p["containerPort"] for p in workers["ports"]}
    assert metrics == {"metrics": int(config["METRICS_PORT"])}
    assert int(config["METRICS_PORT"]) == DEFAULTS.metrics_port


def web_selector(manifests: list[dict[str, Any]]) -> dict[str, str]:
    labels: dict[str, str] = named(manifests, "Deployment", "workflow-web")["spec"]["selector"][
        "matchLabels"
    ]
    return labels


def test_workers_get_longer_than_the_shutdown_grace(manifests: list[dict[str, Any]]) -> None:
    config = named(manifests, "ConfigMap", "workflow-engine-config")["data"]
    grace_ms = int(config.get("SHUTDOWN_GRACE_MS", DEFAULTS.shutdown_grace_ms))
    assert grace_ms == DEFAULTS.shutdown_grace_ms
    workers = named(manifests, "Deployment", "workflow-workers")
    assert pod_spec(workers)["terminationGracePeriodSeconds"] * 1000 > grace_ms
    assert workers["spec"]["replicas"] == 3
    assert named(manifests, "Deployment", "workflow-web")["spec"]["replicas"] == 2


def test_every_deployment_has_a_disruption_budget_and_resources(
    manifests: list[dict[str, Any]],
) -> None:
    budgets = [
        budget["spec"]["selector"]["matchLabels"]
        for budget in of_kind(manifests, "PodDisruptionBudget")
    ]
    for deployment in of_kind(manifests, "Deployment"):
        assert deployment["spec"]["selector"]["matchLabels"] in budgets, deployment["metadata"]
    for container in engine_containers(manifests):
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, container["name"]


@pytest.mark.parametrize("document", ["README.md", ".env.example"])
def test_metrics_port_is_documented(document: str) -> None:
    assert "METRICS_PORT" in (REPO / document).read_text()


def test_every_setting_is_in_env_example() -> None:
    text = (REPO / ".env.example").read_text()
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert not SETTINGS - names, SETTINGS - names


def test_the_dockerfile_parser_sees_every_stage() -> None:
    """A guard for the tests above: the parser does not silently skip instructions."""
    names = [i.name for i in dockerfile_instructions()]
    assert names.count("FROM") == 2
    assert [i.name for i in final_stage(dockerfile_instructions())][-4:] == [
        "USER",
        "EXPOSE",
        "ENTRYPOINT",
        "CMD",
    ]
