"""The ``llm`` tool through whole towline runs, against a real chat-completions server.

The server (tests/fakes/chat.py) speaks the OpenAI protocol over a socket on 127.0.0.1;
the tool's HTTP client is not mocked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunPlan
from tests.fakes.chat import chat_server
from tests.fakes.servers import LocalServer
from tests.helpers import plan, ws
from towline.activities.tools.llm import PRICES
from towline.plan.load import PlanError, check_data
from towline.state import RunState, TaskState
from towline.worker.devserver import free_port

KEY = "sk-test-0123456789abcdef"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    monkeypatch.setenv("TOWLINE_SECRET_LLM_KEY", KEY)
    with chat_server(api_key=KEY) as s:
        yield s


def _ask(tid: str, base_url: str, **with_: Any) -> dict[str, Any]:
    """An llm task with the key from the secret; tried once unless told otherwise."""
    args = {"base_url": base_url, "api_key": "${{ secrets.LLM_KEY }}", **with_}
    retry = args.pop("retry", {"max_attempts": 1})
    timeout = args.pop("task_timeout", None)
    task: dict[str, Any] = {"id": tid, "tool": "llm", "with": args, "retry": retry}
    if timeout is not None:
        task["timeout"] = timeout
    return task


def _failed(t: TaskState) -> tuple[str, str]:
    assert t.status == "failed", t
    assert t.error is not None
    return t.error.category, t.error.message


async def _run(run_plan: RunPlan, *tasks: dict[str, Any]) -> tuple[RunState, dict[str, TaskState]]:
    state = await run_plan(plan(ws("w", *tasks), failure_policy="continue"))
    return state, state.workstreams["w"].tasks


async def test_a_prompt_gets_the_reply_with_tokens_and_cost(
    run_plan: RunPlan, server: LocalServer
) -> None:
    base = f"{server.url}/v1"
    state, tasks = await _run(
        run_plan,
        _ask(
            "ask",
            base,
            model="gpt-4o-mini",
            system="be brief",
            prompt="say hello to the world",
            temperature=0.2,
            max_tokens=50,
        ),
        _ask(
            "priced",
            base,
            model="my-local-model",
            messages=[
                {"role": "user", "content": "one two"},
                {"role": "assistant", "content": "three"},
                {"role": "user", "content": "four five six"},
            ],
            price={"prompt_per_1k": 1.0, "completion_per_1k": 2.0},
        ),
        _ask("unpriced", base, model="my-local-model", prompt="hi"),
    )

    ask = tasks["ask"]
    assert ask.status == "succeeded", ask.error
    assert ask.outputs["text"] == "echo: say hello to the world"
    assert ask.outputs["finish_reason"] == "stop"
    assert ask.outputs["model"] == "gpt-4o-mini"
    # One token per word: "be brief" + "say hello to the world"; "echo: ..." back.
    assert ask.outputs["usage"] == {"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13}
    price = PRICES["gpt-4o-mini"]
    cost = 7 / 1000 * price.prompt_per_1k + 6 / 1000 * price.completion_per_1k
    assert ask.outputs["cost_usd"] == pytest.approx(cost)
    assert ask.outputs["price_source"] == "default"
    assert ask.usage.tokens == 13
    assert ask.usage.cost_usd == pytest.approx(cost)

    sent = next(r.json() for r in server.requests if r.json()["model"] == "gpt-4o-mini")
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "say hello to the world"},
    ]
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == ("gpt-4o-mini", 0.2, 50)
    assert "response_format" not in sent

    priced = tasks["priced"]
    assert priced.outputs["text"] == "echo: four five six"
    assert priced.outputs["usage"]["prompt_tokens"] == 6
    assert priced.outputs["usage"]["completion_tokens"] == 4
    assert priced.outputs["cost_usd"] == pytest.approx(6 / 1000 * 1.0 + 4 / 1000 * 2.0)
    assert priced.outputs["price_source"] == "with"

    unpriced = tasks["unpriced"]
    assert (unpriced.outputs["cost_usd"], unpriced.outputs["price_source"]) == (0.0, "unknown")
    assert state.usage.tokens == 13 + 10 + 3
    assert state.usage.cost_usd == pytest.approx(cost + 0.014)


async def test_the_worker_price_file_overrides_the_defaults(
    run_plan: RunPlan, server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("gpt-4o:\n  prompt_per_1k: 10\n  completion_per_1k: 20\n")
    monkeypatch.setenv("TOWLINE_LLM_PRICES", str(prices))
    _, tasks = await _run(
        run_plan, _ask("ask", f"{server.url}/v1", model="gpt-4o-2024-08-06", prompt="a b")
    )

    out = tasks["ask"].outputs
    assert out["price_source"] == "file"  # "gpt-4o-2024-08-06" is priced as "gpt-4o"
    assert out["cost_usd"] == pytest.approx(2 / 1000 * 10 + 3 / 1000 * 20)


async def test_json_replies_are_parsed_and_prose_fails_the_task(
    run_plan: RunPlan, server: LocalServer
) -> None:
    base = f"{server.url}/v1"
    _, tasks = await _run(
        run_plan,
        _ask("plain", base, model="json-model", prompt="x", temperature=0.5, json=True),
        _ask("fenced", base, model="fenced-json", prompt="x", json=True),
        _ask("prose", base, model="chatty", prompt="x", json=True),
    )

    assert tasks["plain"].outputs["json"] == {"model": "json-model", "temperature": 0.5}
    assert all(r.json()["response_format"] == {"type": "json_object"} for r in server.requests)
    assert tasks["fenced"].outputs["json"] == {"model": "fenced-json", "temperature": None}
    category, message = _failed(tasks["prose"])
    assert category == "tool"
    assert message == (
        "json: true, but the model's reply is not JSON: Sure! Here is what you asked for, in prose."
    )
    assert tasks["prose"].outputs["text"] == "Sure! Here is what you asked for, in prose."


async def test_error_replies_are_categorised(run_plan: RunPlan, server: LocalServer) -> None:
    base = f"{server.url}/v1"
    retry = {"max_attempts": 2, "initial_interval": "100ms"}
    _, tasks = await _run(
        run_plan,
        _ask("down", base, model="error-500", prompt="x", retry=retry),
        _ask("limited", base, model="error-429", prompt="x", retry=retry),
        _ask("bad", base, model="error-400", prompt="x", retry=retry),
        {
            "id": "wrong-key",
            "tool": "llm",
            "retry": retry,
            "with": {"base_url": base, "model": "m", "prompt": "x", "api_key": "sk-wrong"},
        },
    )

    url = f"{base}/chat/completions"
    assert _failed(tasks["down"]) == (
        "tool",
        f"POST {url}: HTTP 500: the fake server was asked for HTTP 500",
    )
    assert tasks["down"].attempts == 2  # retried
    assert _failed(tasks["limited"])[0] == "tool"
    assert tasks["limited"].attempts == 2
    assert _failed(tasks["bad"])[0] == "validation"
    assert tasks["bad"].attempts == 1  # the same request would be refused again
    assert _failed(tasks["wrong-key"]) == (
        "validation",
        f"POST {url}: HTTP 401, the API key was refused: Incorrect API key provided",
    )
    assert tasks["wrong-key"].attempts == 1


async def test_replies_that_are_not_the_protocol_fail_as_tool_errors(
    run_plan: RunPlan, server: LocalServer
) -> None:
    base = f"{server.url}/v1"
    _, tasks = await _run(
        run_plan,
        _ask("html", base, model="html", prompt="x"),
        _ask("empty", base, model="no-choices", prompt="x"),
        _ask("wrong-path", server.url, model="m", prompt="x"),  # forgot the /v1
    )

    category, message = _failed(tasks["html"])
    assert category == "tool"
    assert message == (
        f"the reply from {base}/chat/completions is not JSON (HTTP 200, text/html): "
        "<html><body>502 Bad Gateway</body></html>"
    )
    category, message = _failed(tasks["empty"])
    assert category == "tool"
    assert message.startswith(f"the reply from {base}/chat/completions is not a chat completion")
    category, message = _failed(tasks["wrong-path"])
    assert category == "validation"
    assert message.startswith(f"POST {server.url}/chat/completions: HTTP 404")


async def test_the_task_timeout_stops_a_slow_model(run_plan: RunPlan, server: LocalServer) -> None:
    _, tasks = await _run(
        run_plan, _ask("slow", f"{server.url}/v1", model="slow", prompt="x", task_timeout="1s")
    )

    category, message = _failed(tasks["slow"])
    assert category == "timeout"
    assert "ran past its timeout" in message


async def test_an_unreachable_endpoint_is_a_tool_error_naming_it(run_plan: RunPlan) -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    _, tasks = await _run(
        run_plan,
        {
            "id": "ask",
            "tool": "llm",
            "retry": {"max_attempts": 1},
            "with": {"base_url": base, "model": "m", "prompt": "x"},
        },
    )

    assert _failed(tasks["ask"]) == (
        "tool",
        f"cannot reach {base}/chat/completions: Connection refused",
    )


async def test_a_missing_secret_names_it(run_plan: RunPlan, server: LocalServer) -> None:
    _, tasks = await _run(
        run_plan,
        {
            "id": "ask",
            "tool": "llm",
            "with": {
                "base_url": server.url,
                "model": "m",
                "prompt": "x",
                "api_key": "${{ secrets.NOT_SET_ANYWHERE }}",
            },
        },
    )

    assert _failed(tasks["ask"]) == ("validation", "secret 'NOT_SET_ANYWHERE' is not set")
    assert server.requests == []


def test_bad_input_is_rejected_before_the_run_at_its_path() -> None:
    def task(**with_: Any) -> dict[str, Any]:
        return {"id": "t", "tool": "llm", "with": with_}

    cases = [
        (task(prompt="x"), "with: missing required key 'model'"),
        (task(model="m"), "with: give 'prompt' or 'messages' (exactly one)"),
        (
            task(model="m", prompt="x", messages=[{"role": "user", "content": "y"}]),
            "with: give 'prompt' or 'messages' (exactly one)",
        ),
        (task(model="m", messages=[{"role": "robot", "content": "y"}]), "with.messages[0].role"),
        (task(model="m", prompt="x", temperature=3), "with.temperature"),
        (task(model="m", prompt="x", base_url="localhost:8000"), "with.base_url: must be an"),
        (task(model="m", prompt="x", price={"prompt": 1}), "with.price: unknown key 'prompt'"),
    ]
    for spec, expected in cases:
        with pytest.raises(PlanError) as e:
            check_data(plan(ws("w", spec)))
        assert f"workstreams[0].tasks[0].{expected}" in str(e.value)
