from __future__ import annotations

from tests.conftest import StartEngine


async def test_webhook_trigger_starts_a_linked_execution(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start_engine(db_url)
    workflow = await running.create_workflow(
        {
            "name": "hooked",
            "steps": [{"key": "t", "type": "transform", "config": {"output": "{{ input.v }}"}}],
            "triggers": [{"type": "webhook"}, {"type": "schedule", "cron": "0 0 1 1 *"}],
        }
    )
    webhook, schedule = workflow["triggers"]
    response = await running.client.post(
        f"/api/triggers/{webhook['id']}/fire", json={"input": {"v": 42}}
    )
    assert response.status_code == 202, response.text
    body = await running.wait(response.json()["executionId"])
    assert body["status"] == "completed" and body["output"] == 42
    assert body["triggerId"] == webhook["id"]

    refused = await running.client.post(f"/api/triggers/{schedule['id']}/fire", json={})
    assert refused.status_code == 409
    missing = await running.client.post("/api/triggers/nope/fire", json={})
    assert missing.status_code == 404
