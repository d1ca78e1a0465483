"""The agent's pure parts: token estimates, compaction, the model ladder, the memory of
past fixes, its input, its workspace tools' confinement, and estimates from history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from towline.activities import agent_tools
from towline.agent import choice
from towline.agent.choice import choose_model, difficulty
from towline.agent.context import (
    COMPACTED,
    compact,
    conversation_tokens,
    estimate_tokens,
    message_tokens,
)
from towline.agent.memory import PastFix, closest, signature, similarity
from towline.agent.spec import AgentArgs
from towline.errors import ToolError
from towline.history import AgentRunRecord, ToolCallRecord, open_store
from towline.plan.load import PlanError, check_data
from towline.starter.estimate import estimate_tasks
from towline.starter.stats import by_model
from towline.toolcall import ToolContext

FAILURE = """\
F.
FAILED tests/test_calc.py::test_sub - AssertionError: assert 4 == 2
  File "src/calc.py", line 5, in sub
1 failed, 1 passed in 0.03s
"""


# ---------------------------------------------------------------- tokens and compaction


def test_tokens_are_estimated_at_four_characters_each_rounded_up() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    stub = {"$artifact": "artifact://r/w/t/x", "bytes": 4000}
    assert message_tokens({"role": "tool", "content": stub}) == 4 + 1000


def test_the_servers_count_replaces_the_estimate_for_what_it_was_sent() -> None:
    messages = [_msg("system", "x" * 400), _msg("user", "y" * 400), _msg("tool", "z" * 40)]
    assert conversation_tokens(messages) == 3 * 4 + 100 + 100 + 10
    assert conversation_tokens(messages, measured=(2, 150)) == 150 + 4 + 10


def _msg(role: str, content: Any) -> dict[str, Any]:
    return {"role": role, "content": content}


def _turn(n: int, size: int) -> list[dict[str, Any]]:
    call = {
        "id": f"c{n}",
        "type": "function",
        "function": {"name": "read_file", "arguments": json.dumps({"path": f"f{n}.py"})},
    }
    return [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": f"c{n}", "content": "r" * size},
    ]


def _conversation(turns: int, size: int) -> list[dict[str, Any]]:
    messages = [_msg("system", "be careful"), _msg("user", "fix: " + FAILURE)]
    for n in range(turns):
        messages += _turn(n, size)
    return messages


def test_a_conversation_within_its_window_is_left_alone() -> None:
    messages = _conversation(3, 400)
    assert compact(messages, limit=10_000) == (messages, 0)


def test_compaction_keeps_the_head_and_the_latest_turns_and_cuts_the_oldest_results() -> None:
    messages = _conversation(6, 4000)  # about 1000 tokens per result
    out, done = compact(messages, limit=4500, reply_room=500)
    assert out[:2] == messages[:2]  # instructions and the failure they quote
    assert out[-4:] == messages[-4:]  # the two latest turns, whole
    results = [m["content"] for m in out if m["role"] == "tool"]
    assert done == 3
    assert all(r.startswith(COMPACTED) and "read_file" in r for r in results[:3])
    assert results[3] == "r" * 4000  # cut no more than needed
    assert conversation_tokens(out) <= 4000
    assert messages[2]["role"] == "assistant"  # the input is not changed
    assert messages[3]["content"] == "r" * 4000


def test_compaction_stops_at_what_it_may_cut() -> None:
    messages = _conversation(2, 40_000)
    out, done = compact(messages, limit=500)
    assert done == 0  # both turns are recent: nothing may go
    assert out == messages


def test_compaction_cuts_large_arguments_of_old_calls_too() -> None:
    messages = _conversation(4, 4000)
    messages[2]["tool_calls"][0]["function"]["arguments"] = json.dumps({"content": "w" * 8000})
    out, _ = compact(messages, limit=2500, reply_room=0)
    assert "compacted" in out[2]["tool_calls"][0]["function"]["arguments"]
    assert out[2]["tool_calls"][0]["id"] == "c0"  # the call stays, so its result matches


# ---------------------------------------------------------------- model: auto


def test_failures_name_their_files_and_tests() -> None:
    assert choice.files_in(FAILURE) == {"tests/test_calc.py", "src/calc.py"}
    assert choice.tests_in(FAILURE) == {"tests/test_calc.py::test_sub"}


def test_auto_takes_the_cheapest_model_for_an_easy_failure_and_escalates() -> None:
    ladder = ["nano", "mini", "big"]
    assert difficulty(FAILURE).level == 0
    assert choose_model(ladder, FAILURE) == "nano"
    assert choose_model(ladder, FAILURE, prior_failures=1) == "mini"
    assert choose_model(ladder, FAILURE, prior_failures=5) == "big"  # the ceiling


def test_a_large_failure_over_many_files_and_tests_starts_higher() -> None:
    hard = "\n".join(
        f"FAILED tests/test_m{i}.py::test_{i} - TypeError in src/m{i}.py" for i in range(80)
    )
    assert difficulty(hard).level == 3
    assert choose_model(["nano", "mini", "big"], hard) == "big"
    with pytest.raises(ValueError, match="ladder"):
        choose_model([], FAILURE)


# ---------------------------------------------------------------- memory


def test_a_signature_holds_the_tests_errors_and_files() -> None:
    assert signature(FAILURE) == [
        "error:AssertionError",
        "file:src/calc.py",
        "file:tests/test_calc.py",
        "test:tests/test_calc.py::test_sub",
    ]


def test_similar_failures_are_close_and_unrelated_ones_are_not() -> None:
    same_test = FAILURE.replace("assert 4 == 2", "assert 5 == 2")
    other = 'FAILED tests/test_io.py::test_read - OSError\n  File "src/io.py"'
    assert similarity(signature(FAILURE), signature(same_test)) == 1.0
    assert similarity(signature(FAILURE), signature(other)) == 0.0
    assert similarity([], []) == 0.0


def test_the_closest_past_fixes_are_offered_best_first_newest_among_equals() -> None:
    sig = signature(FAILURE)

    def fix(run: str, text: str) -> PastFix:
        return PastFix(run, "w.t", "m", signature(text), f"summary {run}", "diff")

    past = [
        fix("old", FAILURE),
        fix("unrelated", "FAILED tests/test_io.py::test_read - OSError"),
        fix("partial", "AssertionError in src/calc.py"),
        fix("new", FAILURE),
    ]
    found = closest(sig, past)
    assert [m.fix.run_id for m in found] == ["new", "old", "partial"]
    assert found[0].score == 1.0
    assert [m.fix.run_id for m in closest(sig, past, limit=1)] == ["new"]


# ---------------------------------------------------------------- the input


def test_tool_groups_are_the_built_in_ones_or_a_named_mcp_server() -> None:
    AgentArgs(
        instructions="x",
        model="m",
        tools=["workspace", "docs"],
        mcp={"docs": {"url": "http://h/mcp"}},
    )
    with pytest.raises(ValueError, match=r"group 'workspce'.*did you mean 'workspace'"):
        AgentArgs(instructions="x", model="m", tools=["workspce"])


def test_a_plan_with_a_bad_agent_input_is_rejected_at_its_path() -> None:
    task = {
        "id": "fix",
        "tool": "agent",
        "with": {"instructions": "x", "model": "m", "max_turns": 0},
    }
    with pytest.raises(PlanError) as e:
        check_data({"version": 1, "name": "p", "workstreams": [{"id": "w", "tasks": [task]}]})
    assert "workstreams[0].tasks[0].with.max_turns" in str(e.value)


# ---------------------------------------------------------------- workspace tools


def _ctx(root: Path) -> ToolContext:
    return ToolContext(
        run_id="r", workstream="w", task="t", workspace=str(root), plan_dir=str(root)
    )


async def test_workspace_tools_stay_inside_the_workspace(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / ".git").mkdir(parents=True)
    (root / "src").mkdir()
    (root / "src" / "a.py").write_text("one\ntwo\nthree\n")
    (tmp_path / "secret.txt").write_text("no")
    (root / "link").symlink_to(tmp_path / "secret.txt")
    ctx = _ctx(root)
    for path in ("../secret.txt", "/etc/passwd", "link", ".git/config"):
        with pytest.raises(ToolError) as e:
            await agent_tools.read_file(root, {"path": path}, ctx, "k")
        assert e.value.category == "validation"
    with pytest.raises(ToolError, match="outside the workspace"):
        await agent_tools.write_file(root, {"path": "../x", "content": "x"}, ctx, "k")
    assert await agent_tools.read_file(root, {"path": "src/a.py", "start_line": 2}, ctx, "k") == (
        "two\nthree\n"
    )
    assert await agent_tools.list_files(root, {}, ctx, "k") == "src/a.py"  # no .git, no link out
    assert await agent_tools.search(root, {"pattern": "t[wh]"}, ctx, "k") == (
        "src/a.py:2: two\nsrc/a.py:3: three"
    )
    assert "wrote src/b/c.py" in await agent_tools.write_file(
        root, {"path": "src/b/c.py", "content": "x = 1\n"}, ctx, "k"
    )
    with pytest.raises(ToolError, match="not JSON"):
        agent_tools.parse_arguments("{nope")


async def test_run_reports_the_exit_code_and_is_killed_at_its_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOWLINE_ARTIFACTS", str(tmp_path / "artifacts"))
    root = tmp_path / "ws"
    root.mkdir()
    ctx = _ctx(root)
    done = await agent_tools.run(root, {"command": ["sh", "-c", "echo hi; exit 3"]}, ctx, "k")
    assert done.splitlines()[1:] == ["exit code 3", "hi"]
    slow = await agent_tools.run(root, {"command": ["sleep", "30"], "timeout_s": 0.5}, ctx, "k2")
    assert "stopped after 0.5s" in slow
    with pytest.raises(ToolError, match="command must be a list"):
        await agent_tools.run(root, {"command": "ls"}, ctx, "k3")


# ---------------------------------------------------------------- history, stats, estimate


def _agent_row(model: str, fixed: bool | None, tokens: int) -> AgentRunRecord:
    return AgentRunRecord(
        run_id="r1", plan="p", workstream="w", task="t", label="fix1", model=model,
        signature=("test:a.py::t",), summary="s", diff="d", stop="answered", turns=3,
        tokens=tokens, cost_usd=0.01, fixed=fixed, created_at=1.0,
    )  # fmt: skip


def test_agent_runs_are_kept_and_summed_by_model(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "history.db"))
    for row in (_agent_row("a", True, 10), _agent_row("a", False, 20), _agent_row("b", None, 5)):
        store.record_agent(row)
    assert [r.fixed for r in store.agent_runs(fixed_only=True)] == [True]
    assert store.agent_runs()[0].signature == ("test:a.py::t",)
    models = {m.model: m for m in by_model(store.agent_runs())}
    assert (models["a"].conversations, models["a"].fixes, models["a"].fixed) == (2, 2, 1)
    assert models["a"].fix_rate == 0.5
    assert models["a"].tokens == 30
    assert models["b"].fix_rate is None


def test_estimates_come_from_the_tasks_history_then_the_tools_then_prices() -> None:
    plan = check_data(
        {
            "version": 1,
            "name": "p",
            "workstreams": [
                {
                    "id": "w",
                    "tasks": [
                        {"id": "known", "tool": "echo"},
                        {
                            "id": "ask",
                            "tool": "llm",
                            "with": {"model": "gpt-4o", "prompt": "x" * 400},
                        },
                        {"id": "free", "tool": "shell", "with": {"command": ["true"]}},
                        {
                            "id": "gate",
                            "tool": "test_gate",
                            "with": {"command": ["pytest"]},
                            "on_failure": {
                                "strategy": "fix",
                                "fix": {
                                    "tool": "agent",
                                    "with": {"instructions": "x", "model": "m"},
                                },
                            },
                        },
                    ],
                }
            ],
        }
    )

    def call(
        task: str, tool: str, seconds: float, tokens: int = 0, plan: str = "p"
    ) -> ToolCallRecord:
        return ToolCallRecord(
            run_id="r", plan=plan, workstream="w", task=task, tool=tool, attempt=1,
            outcome="succeeded", category=None, started_at=0.0, duration_s=seconds,
            tokens=tokens, cost_usd=tokens / 1000,
        )  # fmt: skip

    records = [
        call("known", "echo", 1.0),
        call("known", "echo", 3.0),
        call("x", "agent", 9.0, 500, "q"),
    ]
    rows = {
        r.task: r
        for r in estimate_tasks(plan, records, lambda m: (0.01, 0.02) if m == "gpt-4o" else None)
    }
    assert (rows["w.known"].seconds, rows["w.known"].source) == (2.0, "this task: 2 call(s)")
    assert rows["w.ask"].tokens == 100 + 500  # the prompt, and a guess at the reply
    assert rows["w.ask"].cost_usd == pytest.approx(0.1 * 0.01 + 0.5 * 0.02)
    assert rows["w.free"].source == "no history"
    assert rows["w.free"].tokens is None
    fix = rows["w.gate (fix)"]
    assert (fix.tool, fix.tokens, fix.source) == ("agent", 500, "tool agent: 1 call(s)")
