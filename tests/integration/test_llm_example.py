"""The README's "AI steps" example (examples/ask-each.yaml with examples/inputs/ask-each.json):
an llm step mapped over the questions, then a transform joining the answers, run as written
against the fake OpenAI-compatible server, on SQLite and PostgreSQL, so the README stays true."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import StartEngine
from tests.support.fake_llm import Answer, run_fake_llm
from tests.support.flows import start

pytestmark = pytest.mark.timeout(60)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ANSWERS = {
    "Why is the sky blue?": "Air scatters blue light most.",
    "What is a checkpoint in a workflow engine?": "A stored step result.",
    "Name one planet with rings.": "Saturn.",
}


def answer(body: dict[str, Any]) -> Answer:
    question = body["messages"][-1]["content"]
    return Answer(ANSWERS[question], prompt_tokens=10)


async def test_the_ask_each_example_runs_as_written(db_url: str, start_engine: StartEngine) -> None:
    document = yaml.safe_load((EXAMPLES / "ask-each.yaml").read_text())
    request = json.loads((EXAMPLES / "inputs" / "ask-each.json").read_text())
    with run_fake_llm() as fake:
        fake.respond("llama3.2", answer)
        running = await start(start_engine, db_url, llm_base_url=fake.url, http_allowlist=[])
        await running.create_workflow(document)
        response = await running.client.post("/api/workflows/ask-each/execute", json=request)
        assert response.status_code == 202, response.text
        body = await running.wait(response.json()["executionId"])
        asked = [r.body["messages"] for r in fake.requests("llama3.2")]
    assert body["status"] == "completed", body
    questions = request["input"]["questions"]
    assert sorted(m[-1]["content"] for m in asked) == sorted(questions)
    assert all(
        m[0] == {"role": "system", "content": "Answer in one short sentence."} for m in asked
    )
    output = body["output"]
    assert output["answers"] == [ANSWERS[q] for q in questions]
    assert output["text"] == "".join(f"Q: {q}\nA: {ANSWERS[q]}\n" for q in questions)
    words = sum(len(ANSWERS[q].split(" ")) for q in questions)
    assert output["totalTokens"] == 10 * len(questions) + words
    keys = [step["stepKey"] for step in body["steps"]]
    assert keys == ["ask", "ask[0]", "ask[1]", "ask[2]", "join"]
