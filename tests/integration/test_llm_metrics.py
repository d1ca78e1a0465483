"""LLM usage reaches the worker's metrics: tokens and cost by model, from the ``llm`` tool."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from tests.conftest import RunPlan
from tests.fakes.chat import chat_server
from tests.fakes.servers import LocalServer
from tests.helpers import plan, ws


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with chat_server() as s:
        yield s


def _counted(name: str, model: str) -> float:
    return REGISTRY.get_sample_value(name, {"tool": "llm", "model": model}) or 0.0


async def test_tokens_and_cost_are_counted_by_model(run_plan: RunPlan, server: LocalServer) -> None:
    model = "metrics-test-model"  # this test's own label; the registry is the process's
    tokens_before = _counted("towline_llm_tokens_total", model)
    cost_before = _counted("towline_llm_cost_usd_total", model)
    task = {
        "id": "ask",
        "tool": "llm",
        "with": {
            "base_url": f"{server.url}/v1",
            "model": model,
            "prompt": "one two three",
            "price": {"prompt_per_1k": 1.0, "completion_per_1k": 2.0},
        },
    }
    state = await run_plan(plan(ws("w", task)))
    usage = state.workstreams["w"].tasks["ask"].usage
    assert usage.tokens > 0
    assert usage.cost_usd > 0
    tokens = _counted("towline_llm_tokens_total", model) - tokens_before
    cost = _counted("towline_llm_cost_usd_total", model) - cost_before
    assert tokens == usage.tokens
    assert cost == pytest.approx(usage.cost_usd)
