"""`workflow-engine keys create|list|revoke` as a user runs them: processes on the database of
DATABASE_URL, next to a running `serve` that accepts and then refuses the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import TOKEN, StartServe
from tests.support.process import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

HELLO = "name: hello\nsteps:\n  - key: hi\n    type: transform\n    config: {output: {m: hi}}\n"


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_keys_cli_end_to_end(
    database: str, start_serve: StartServe, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data = tmp_path / "data"
    url = (
        f"sqlite:///{data / 'workflow-engine.db'}"
        if database == "sqlite"
        else request.getfixturevalue("private_pg_url")
    )
    env: dict[str, str | None] = {"DATA_DIR": str(data), "DATABASE_URL": url}

    def cli(*args: str) -> tuple[int, str, str]:
        done = run_cli(["keys", *args], tmp_path, env)
        return done.returncode, done.stdout, done.stderr

    # The first key needs no server: the CLI migrates and writes the database itself.
    code, out, err = cli("create", "--name", "ops-key", "--role", "operator")
    assert code == 0, err
    operator = out.strip()
    assert operator.startswith("wfe_") and "\n" not in operator
    assert "Created key 'ops-key' (operator)" in err and "not shown again" in err
    code, _, err = cli("create", "--name", "ops-key", "--role", "viewer")
    assert code == 1 and "already exists" in err
    code, _, err = cli("create", "--name", "x", "--role", "superuser")
    assert code == 2 and "superuser" in err
    code, _, err = cli("create", "--name", "ci", "--role", "trigger", "--workflow", "hello")
    assert code == 1 and "'hello' not found" in err

    (tmp_path / "hello.yaml").write_text(HELLO)
    # A long cache: the CLI's revocation must still reach this serve at once (its stamp file
    # in DATA_DIR), not when the cache expires.
    serve = start_serve(
        {**env, "API_KEY_CACHE_MS": "60000"}, args=("--apply", str(tmp_path / "hello.yaml"))
    )
    code, out, err = cli("create", "--name", "ci", "--role", "trigger", "--workflow", "hello")
    assert code == 0, err
    trigger = out.strip()

    with serve.client(operator) as client:
        assert client.get("/api/workflows").status_code == 200
        assert client.put("/api/workflows/hello", json={}).status_code == 403
    with serve.client(trigger) as client:
        started = client.post("/api/workflows/hello/execute", json={"input": {}})
        assert started.status_code == 202, started.text
        assert client.get("/api/workflows").status_code == 403

    code, out, err = cli("list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "ROLE", "PREFIX"]
    assert [line.split()[:2] for line in lines[1:]] == [["ci", "trigger"], ["ops-key", "operator"]]
    assert operator not in out and trigger not in out
    assert operator[:12] + "…" in out
    code, out, _ = cli("list", "--json")
    keys = {k["name"]: k for k in json.loads(out)}
    assert keys["ops-key"]["lastUsedAt"] is not None and keys["ops-key"]["revokedAt"] is None
    assert len(keys["ci"]["workflows"]) == 1

    code, out, err = cli("revoke", "ops-key")
    assert code == 0 and "Revoked key 'ops-key' (operator)" in out, err
    with serve.client(operator) as client:
        assert client.get("/api/workflows").status_code == 401
    code, _, err = cli("revoke", "ops-key")
    assert code == 1 and "not found" in err  # a name finds live keys only
    code, out, _ = cli("revoke", keys["ops-key"]["id"])  # by id: again, nothing changes
    assert code == 0
    with serve.client(TOKEN) as client:
        audit = client.get("/api/audit", params={"targetType": "key"}).json()["entries"]
    assert [(e["action"], e["actor"]) for e in audit] == [
        ("key.revoked", "cli"),
        ("key.created", "cli"),
        ("key.created", "cli"),
    ]
