"""Bad configuration: `serve` refuses to start with one clear line and exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.process import free_port, run_cli

pytestmark = pytest.mark.e2e


def _serve(tmp_path: Path, env: dict[str, str | None], *args: str) -> tuple[int, str, str]:
    values: dict[str, str | None] = {
        "DATA_DIR": str(tmp_path / "data"),
        "PORT": str(free_port()),
        "API_TOKEN": "t",
        **env,
    }
    result = run_cli(["serve", *args], tmp_path, values, timeout=30)
    return result.returncode, result.stdout, result.stderr


def _assert_clear_failure(code: int, stderr: str, *phrases: str) -> None:
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    assert 'File "' not in stderr, stderr
    for phrase in phrases:
        assert phrase in stderr, stderr


def test_auth_disabled_on_a_public_bind_is_refused(tmp_path: Path) -> None:
    code, stdout, stderr = _serve(
        tmp_path, {"AUTH_DISABLED": "true", "HOST": "0.0.0.0", "API_TOKEN": None}
    )
    _assert_clear_failure(code, stderr, "AUTH_DISABLED", "0.0.0.0")
    assert "Listening" not in stdout


def test_unsupported_database_url(tmp_path: Path) -> None:
    code, _, stderr = _serve(tmp_path, {"DATABASE_URL": "mysql://x"})
    _assert_clear_failure(code, stderr, "DATABASE_URL", "mysql")


def test_unreachable_database(tmp_path: Path) -> None:
    code, _, stderr = _serve(
        tmp_path, {"DATABASE_URL": f"postgresql://user:secret@127.0.0.1:{free_port()}/db"}
    )
    _assert_clear_failure(code, stderr, "cannot connect to the database")
    assert "secret" not in stderr


def test_invalid_workflow_file_given_to_apply(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "bad.yaml").write_text(
        "name: bad\nsteps:\n  - key: a\n    type: transform\n    unknownField: 1\n"
    )
    code, _, stderr = _serve(tmp_path, {}, "--apply", str(folder))
    _assert_clear_failure(code, stderr, "bad.yaml", "unknownField")


def test_a_bad_setting_value(tmp_path: Path) -> None:
    code, _, stderr = _serve(tmp_path, {"LEASE_MS": "soon"})
    _assert_clear_failure(code, stderr, "lease_ms")


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        ('{"gpt-4o-mini": {"tokensPerMinute": 0}}', "gpt-4o-mini.tokensPerMinute"),
        ('{"gpt-4o-mini": {"tokensPerMinut": 10}}', "Extra inputs are not permitted"),
        ("{gpt-4o-mini: 10}", "not valid JSON"),
        ("[1]", "must be a JSON object by model"),
    ],
)
def test_bad_llm_limits_are_refused(tmp_path: Path, value: str, phrase: str) -> None:
    code, _, stderr = _serve(tmp_path, {"LLM_LIMITS": value})
    _assert_clear_failure(code, stderr, "LLM_LIMITS", phrase)


def test_migrate_with_a_sqlite_folder_it_cannot_create_says_so(tmp_path: Path) -> None:
    result = run_cli(["migrate"], tmp_path, {"DATABASE_URL": "sqlite:////proc/no-such/engine.db"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "cannot create '/proc/no-such'" in result.stderr
