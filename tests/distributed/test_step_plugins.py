"""`serve` + `workflow-engine workers` on PostgreSQL and Redis run a step type from an installed
package: `serve` accepts the workflow, a `workers` process runs the step."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.distributed.conftest import MakeCluster
from tests.support.plugins import check_shout, install_plugin
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(180)]


def test_serve_and_workers_run_a_step_type_from_an_installed_package(
    tmp_path: Path, fresh_pg: str, redis_server: RedisServer, make_cluster: MakeCluster
) -> None:
    site = install_plugin(tmp_path / "plugin")
    cluster = make_cluster(fresh_pg, redis_server.url, PYTHONPATH=str(site))
    serve = cluster.start(workers=1)
    with serve.client() as client:
        check_shout(client)
