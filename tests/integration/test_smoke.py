from __future__ import annotations

from tests.conftest import StartEngine
from tests.support.target import Target


async def test_three_step_workflow_completes(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start_engine(db_url)
    await running.create_workflow(
        {
            "name": "three",
            "steps": [
                {"key": "a", "type": "transform", "config": {"output": {"n": "{{ input.n }}"}}},
                {"key": "b", "type": "http", "config": {"url": f"{target.url}/count/b"}},
                {
                    "key": "c",
                    "type": "transform",
                    "config": {
                        "output": {
                            "n": "{{ steps.a.output.n }}",
                            "hits": "{{ steps.b.output.body.hits }}",
                        }
                    },
                },
            ],
        }
    )
    execution_id = await running.execute("three", {"n": 7})
    body = await running.wait(execution_id)
    assert body["status"] == "completed", body
    assert body["output"] == {"n": 7, "hits": 1}
    assert [h.idempotency_key for h in target.hits("count/b")] == [f"{execution_id}:b"]
