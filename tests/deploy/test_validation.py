"""The deployment files pass the linters and schemas their tools check them against: hadolint
(Dockerfile), the Compose Specification's JSON schema (vendored in check-jsonschema), and the
Kubernetes OpenAPI schemas bundled in kubernetes-validate (strict: unknown fields fail)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import COMPOSE, DOCKERFILE, KUBERNETES, manifest_files

BIN = Path(sys.executable).parent
# The newest Kubernetes release whose schemas kubernetes-validate bundles, and an older one still
# in wide use: the manifests hold for both.
KUBERNETES_VERSIONS = (kubernetes_validate.latest_version(), "1.33.0")
KUBERNETES_VERSION = KUBERNETES_VERSIONS[0]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_dockerfile_passes_hadolint() -> None:
    result = _run(str(BIN / "hadolint"), "--failure-threshold", "info", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_specification() -> None:
    result = _run(
        str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_check_would_catch_a_mistake(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    document = yaml.safe_load(COMPOSE.read_text())
    document["services"]["web"]["depends_on"]["postgres"]["condition"] = "service_up"
    broken.write_text(yaml.safe_dump(document))
    result = _run(
        str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken)
    )
    assert result.returncode != 0


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_validates_against_kubernetes(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents
    for version in KUBERNETES_VERSIONS:
        for document in documents:
            kubernetes_validate.validate(document, version, strict=True)


def test_the_kubernetes_check_would_catch_a_mistake() -> None:
    (deployment,) = [
        d
        for d in yaml.safe_load_all((KUBERNETES / "workers.yaml").read_text())
        if d["kind"] == "Deployment"
    ]
    broken: dict[str, Any] = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 45  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    assert [i["name"] for i in kustomization["images"]] == ["workflow-engine"]
