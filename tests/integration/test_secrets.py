"""Secrets reach the tools that use them and nothing else: not history, logs or outputs.

A plan passes one secret from the worker's environment and one from its secrets file to
``shell`` (which prints them) and to ``llm`` (as the API key, which the chat server
checks, and in the prompt, which it echoes). Then the whole history of the run and of
its workstream, every event and every payload in it, is searched for the values.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from tests.conftest import RunPlan
from tests.fakes.chat import chat_server
from tests.fakes.servers import LocalServer
from tests.helpers import plan, ws
from towline.activities.artifacts import read_artifact
from towline.state import workstream_workflow_id

ENV_SECRET = f"env-{secrets.token_hex(12)}"
FILE_SECRET = f"sk-file-{secrets.token_hex(12)}"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    """A chat server that accepts only the file secret as its key; secrets in place."""
    monkeypatch.setenv("TOWLINE_SECRET_DEPLOY_TOKEN", ENV_SECRET)
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text(f"# the worker's secrets\nexport LLM_KEY='{FILE_SECRET}'\n")
    monkeypatch.setenv("TOWLINE_SECRETS_FILE", str(secrets_file))
    with chat_server(api_key=FILE_SECRET) as s:
        yield s


def _payloads(message: Message) -> Iterator[Payload]:
    """Every Payload inside a protobuf message, however deeply nested."""
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue  # a scalar
        if isinstance(value, Message):
            yield from _payloads(value)
            continue
        items = value.values() if hasattr(value, "values") else value  # a map, or a list
        for item in items:
            if isinstance(item, Message):
                yield from _payloads(item)


async def _history_texts(client: Client, workflow_ids: list[str]) -> tuple[bytes, list[str]]:
    """All histories' events as bytes and as JSON (payloads base64-encoded there), and
    every payload's data decoded as text."""
    raw = b""
    decoded: list[str] = []
    for wid in workflow_ids:
        history = await client.get_workflow_handle(wid).fetch_history()
        raw += history.to_json().encode()
        for event in history.events:
            raw += event.SerializeToString()
            decoded.extend(p.data.decode("utf-8", errors="replace") for p in _payloads(event))
    return raw, decoded


async def test_secrets_never_reach_history_logs_or_outputs(
    run_plan: RunPlan,
    server: LocalServer,
    client: Client,
    towline_home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    shell_task: dict[str, Any] = {
        "id": "deploy",
        "tool": "shell",
        "retry": {"max_attempts": 1},
        "with": {
            "command": [
                "sh",
                "-c",
                'echo "token=$TOKEN"; echo "arg=$1" >&2',
                "sh",
                "${{ secrets.DEPLOY_TOKEN }}",
            ],
            "env": {"TOKEN": "${{ secrets.DEPLOY_TOKEN }}"},
        },
    }
    failing: dict[str, Any] = {
        "id": "leaky-failure",
        "tool": "shell",
        "retry": {"max_attempts": 1},
        "with": {
            "command": ["sh", "-c", 'echo "bad token $T" >&2; exit 3'],
            "env": {"T": "${{ secrets.DEPLOY_TOKEN }}"},
        },
    }
    ask: dict[str, Any] = {
        "id": "ask",
        "tool": "llm",
        "retry": {"max_attempts": 1},
        "with": {
            "base_url": f"{server.url}/v1",
            "model": "gpt-4o-mini",
            "api_key": "${{ secrets.LLM_KEY }}",
            "prompt": "repeat after me: ${{ secrets.LLM_KEY }} and ${{ secrets.DEPLOY_TOKEN }}",
        },
    }
    state = await run_plan(plan(ws("w", shell_task, failing, ask), failure_policy="continue"))

    tasks = state.workstreams["w"].tasks
    deploy = tasks["deploy"]
    assert deploy.status == "succeeded", deploy.error
    assert deploy.outputs["stdout"] == "token=***\n"
    assert deploy.outputs["stderr"] == "arg=***\n"
    log = read_artifact(deploy.outputs["log"])
    assert log.count(b"***") == 2  # stdout and stderr interleave in the log
    leaky = tasks["leaky-failure"]
    assert leaky.error is not None
    assert leaky.error.output == "bad token ***\n"
    answer = tasks["ask"]
    assert answer.status == "succeeded", answer.error  # so the key reached the server
    assert server.requests[0].headers["authorization"] == f"Bearer {FILE_SECRET}"
    assert answer.outputs["text"] == "echo: repeat after me: *** and ***"

    run_id = state.run_id
    raw, payloads = await _history_texts(client, [run_id, workstream_workflow_id(run_id, "w")])
    assert any("repeat after me: ***" in p for p in payloads)  # the outputs were seen
    assert any("${{ secrets.LLM_KEY }}" in p for p in payloads)  # inputs: unresolved
    for value in (ENV_SECRET, FILE_SECRET):
        assert value.encode() not in raw
        assert all(value not in p for p in payloads)
        assert value not in json.dumps(state.model_dump(mode="json"))
        assert value not in caplog.text
        for path in towline_home.rglob("*"):  # artifacts (logs) and workspaces
            if path.is_file():
                assert value.encode() not in path.read_bytes(), path
