"""The ``agent`` tool end to end: a scripted model (a real chat-completions server on a
socket), a real repository and its real tests, the real dev server and worker."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tests.conftest import RunPlan
from tests.fakes.chat import agent_server, answer, call, conversation
from tests.helpers import diff_of, make_repo
from towline.activities.artifacts import read_artifact
from towline.stored import stored_ref

PY = sys.executable
CALC = "def add(a, b):\n    return a + b\n"
TESTS = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
NEW_TEST = "\n\ndef test_sub():\n    from calc import sub\n\n    assert sub(3, 1) == 2\n"
FIX = (
    "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,6 @@\n def add(a, b):\n     return a + b\n"
    "+\n+\n+def sub(a, b):\n+    return a - b\n"
)


def project(tmp_path: Path) -> tuple[Path, Path]:
    """A repository whose tests pass, and (in the plan's folder) a patch adding a test of
    a function that does not exist yet: its test gate fails after the patch."""
    repo = make_repo(tmp_path / "repo", {"calc.py": CALC, "test_calc.py": TESTS})
    plan_dir = tmp_path / "plan"
    (plan_dir / "patches").mkdir(parents=True)
    patch = diff_of(repo, {"test_calc.py": TESTS + NEW_TEST}, tmp_path / "scratch")
    (plan_dir / "patches" / "test.diff").write_text(patch)
    return repo, plan_dir


def fixer_script() -> list[Any]:
    return [
        call("read_file", path="calc.py"),
        call("apply_patch", patch=FIX),
        call("run", command=[PY, "-m", "pytest", "-q", "-p", "no:cacheprovider"]),
        answer("Added sub(a, b) to calc.py; the tests pass."),
    ]


def fix_plan(repo: Path, base_url: str, **agent: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "agent-fix",
        "workstreams": [
            {
                "id": "api",
                "repo": {"path": str(repo)},
                "tasks": [
                    {"id": "apply", "tool": "patch.apply", "with": {"patch": "patches/test.diff"}},
                    {
                        "id": "test",
                        "tool": "test_gate",
                        "needs": ["apply"],
                        "with": {"command": [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider"]},
                        "retry": {"max_attempts": 1},
                        "on_failure": {
                            "strategy": "fix",
                            "max_fixes": 2,
                            "fix": {
                                "tool": "agent",
                                "with": {
                                    "instructions": "The tests fail:\n${{ failure.output }}\n"
                                    "Make them pass.",
                                    "base_url": base_url,
                                    "model": "fixer",
                                    **agent,
                                },
                            },
                        },
                    },
                ],
            }
        ],
    }


def _text(value: Any) -> str:
    ref = stored_ref(value)
    return read_artifact(ref).decode() if ref else str(value)


async def test_a_fix_agent_repairs_a_failing_test_gate(
    client: Client, run_plan: RunPlan, tmp_path: Path
) -> None:
    repo, plan_dir = project(tmp_path)
    with agent_server({"fixer": fixer_script()}) as server:
        state = await run_plan(
            fix_plan(repo, server.url + "/v1"), plan_dir=plan_dir, run_id="agent-fix-run"
        )

    test = state.workstreams["api"].tasks["test"]
    assert state.status == "succeeded", state.model_dump_json(indent=1)
    assert test.status == "succeeded"
    assert test.fixes == 1
    assert test.runs == 2  # failed, fixed, passed on its next try
    fix = test.fix_outputs
    assert fix is not None
    assert fix["summary"] == "Added sub(a, b) to calc.py; the tests pass."
    assert fix["turns"] == 4
    assert fix["stop"] == "answered"
    assert fix["files"] == ["calc.py"]
    diff = _text(fix["diff"])
    assert "+def sub(a, b):" in diff
    assert "test_calc.py" not in diff  # what the agent changed, not the patch before it
    # Tokens counted per turn, toward the run's usage.
    assert fix["tokens"] > 0
    assert test.usage.tokens == fix["tokens"]
    assert state.usage.tokens == fix["tokens"]
    # One request per turn, none repeated; the model saw the failure, then each result.
    requests = [conversation(r) for r in server.requests]
    assert [len(m) for m in requests] == [2, 4, 6, 8]
    assert "test_sub" in requests[0][1]["content"]
    assert "return a + b" in requests[1][3]["content"]
    assert "applied: calc.py" in requests[2][5]["content"]
    assert "2 passed" in requests[3][7]["content"]
    # The conversation is a workflow of its own: a timeline of turns and tool calls.
    history = client.get_workflow_handle("agent-fix-run/api/test").fetch_history_events()
    summaries = [
        e.user_metadata.summary.data.decode()
        async for e in history
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert any("turn 1: fixer" in s for s in summaries), summaries
    assert any("turn 1: read_file calc.py" in s for s in summaries), summaries
    assert any("turn 3: run" in s for s in summaries), summaries


WRONG = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a + b\n"
RIGHT = WRONG.replace("return a + b\n", "return a - b\n").replace("a - b", "a + b", 1)


async def test_auto_escalates_after_a_failed_fix_and_a_later_run_is_offered_the_fix(
    client: Client, run_plan: RunPlan, tmp_path: Path, towline_home: Path
) -> None:
    scripts = {
        "small": [call("write_file", path="calc.py", content=WRONG), answer("Added sub.")],
        "big": [
            call("read_file", path="calc.py"),
            call("write_file", path="calc.py", content=RIGHT),
            call("run", command=[PY, "-m", "pytest", "-q", "-p", "no:cacheprovider"]),
            answer("Made sub subtract; the tests pass."),
        ],
    }
    agent = {"model": "auto", "ladder": ["small", "big"]}
    with agent_server(scripts) as server:
        repo, plan_dir = project(tmp_path / "one")
        first = await run_plan(fix_plan(repo, server.url + "/v1", **agent), plan_dir=plan_dir)
        seen_first = len(server.requests)
        repo, plan_dir = project(tmp_path / "two")
        second = await run_plan(fix_plan(repo, server.url + "/v1", **agent), plan_dir=plan_dir)
        later = [conversation(r) for r in server.requests[seen_first:]]

    test = first.workstreams["api"].tasks["test"]
    assert first.status == "succeeded", first.model_dump_json(indent=1)
    assert test.fixes == 2  # the cheap model's fix did not work; the next one up's did
    assert test.fix_outputs is not None
    assert test.fix_outputs["model"] == "big"
    assert second.status == "succeeded"
    # The later run's first agent was offered the fix that worked, with its diff.
    system = later[0][0]["content"]
    assert "Past fixes of similar failures" in system
    assert "Made sub subtract; the tests pass." in system
    assert "+    return a - b" in system
    assert "Added sub." not in system  # the fix that did not work is not offered
    later_fix = second.workstreams["api"].tasks["test"].fix_outputs
    assert later_fix is not None
    assert later_fix["memory"] == [first.run_id]

    from towline import history
    from towline.starter import estimate, stats

    store = history.open_store()
    summary = stats.summary(store, plan=None, tool=None)
    models = {m.model: m for m in summary.agents}
    assert (models["small"].fixes, models["small"].fixed) == (2, 0)
    assert (models["big"].fixes, models["big"].fixed) == (2, 2)
    assert summary.memory == 2
    assert models["big"].tokens > 0
    rows = {r.task: r for r in estimate.for_plan(fix_plan_spec(server.url), store)}
    fix = rows["api.test (fix)"]
    assert fix.tool == "agent"
    assert fix.source.startswith("this task")
    assert fix.tokens is not None
    assert fix.tokens > 0


def fix_plan_spec(url: str) -> Any:
    from towline.plan.load import check_data

    return check_data(fix_plan(Path("/nonexistent"), url + "/v1"))


def scratch_plan(
    base_url: str, budget: dict[str, Any] | None = None, **agent: Any
) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "version": 1,
        "name": "agent-scratch",
        "workstreams": [
            {
                "id": "w",
                "tasks": [
                    {
                        "id": "a",
                        "tool": "agent",
                        "with": {"instructions": "Look around.", "base_url": base_url, **agent},
                    }
                ],
            }
        ],
    }
    if budget is not None:
        plan["settings"] = {"budget": budget}
    return plan


async def test_the_runs_budget_stops_an_agent_mid_conversation(run_plan: RunPlan) -> None:
    script: list[Any] = [call("list_files", path=".") for _ in range(10)] + [answer("done")]
    budget = {"max_tokens": 2500, "on_exceed": "fail"}
    with agent_server({"looker": script}, tokens_per_word=10) as server:
        state = await run_plan(scratch_plan(server.url + "/v1", budget, model="looker"))
        requests = len(server.requests)

    task = state.workstreams["w"].tasks["a"]
    assert state.status == "failed"
    assert task.error is not None
    assert task.error.category == "budget"
    assert task.outputs["stop"] == "budget"
    assert 1 < requests < 10  # it ran a few turns, then stopped before the next model call
    assert task.outputs["turns"] == requests
    assert state.usage.tokens == task.outputs["tokens"] >= 2500


async def test_an_agent_calls_an_mcp_servers_tool(run_plan: RunPlan) -> None:
    server_py = Path(__file__).resolve().parents[1] / "fakes" / "mcp_server.py"

    def report(body: dict[str, Any]) -> dict[str, Any]:
        return answer(f"the sum is {body['messages'][-1]['content']}")

    script: list[Any] = [call("calc__add", a=2, b=3), report]
    with agent_server({"mcp-user": script}) as server:
        state = await run_plan(
            scratch_plan(
                server.url + "/v1",
                model="mcp-user",
                tools=["calc"],
                mcp={"calc": {"command": [PY, str(server_py), "stdio"]}},
            )
        )
        tools = [t["function"]["name"] for t in server.requests[0].json()["tools"]]

    task = state.workstreams["w"].tasks["a"]
    assert state.status == "succeeded", state.model_dump_json(indent=1)
    assert task.outputs["summary"] == "the sum is 5"
    assert "calc__add" in tools
    assert "read_file" not in tools  # only the groups the task names


async def test_a_long_conversation_is_compacted_and_continues_as_new(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from towline.agent.spec import AgentArgs, AgentRequest
    from towline.toolcall import ToolContext
    from towline.workflows.agent import AgentWorkflow

    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / "big.txt").write_text(" ".join(f"word{i}" for i in range(800)))  # ~6 KB
    script: list[Any] = [call("read_file", path="big.txt") for _ in range(6)]
    script.append(answer("read it six times"))
    rid = f"compact-{tmp_path.name[-12:]}"
    with agent_server({"reader": script}) as server:
        req = AgentRequest(
            context=ToolContext(
                run_id=rid, workstream="w", task="a", workspace=str(folder), plan_dir=str(tmp_path)
            ),
            args=AgentArgs(
                instructions="Read big.txt, again and again.",
                model="reader",
                base_url=server.url + "/v1",
                context_tokens=5000,
            ),
            label="main",
            deadline=datetime.now(UTC) + timedelta(hours=1),
            max_history=40,
        )
        handle = await client.start_workflow(
            AgentWorkflow.run, req, id=f"{rid}/w/a", task_queue=task_queue
        )
        result = await handle.result()
        requests = [conversation(r) for r in server.requests]

    assert result.error is None
    assert result.outputs["summary"] == "read it six times"
    assert result.outputs["turns"] == 7
    assert result.outputs["compacted"] >= 2
    # One request per turn across every continue-as-new: none repeated, none lost.
    assert [sum(m["role"] == "assistant" for m in r) for r in requests] == list(range(7))
    runs = [w async for w in client.list_workflows(f'WorkflowId = "{rid}/w/a"')]
    assert len(runs) >= 2
    last = requests[-1]
    assert last[0]["role"] == "system"
    assert last[1]["content"] == "Read big.txt, again and again."  # the head is kept
    results = [m["content"] for m in last if m["role"] == "tool"]
    assert results[0].startswith("[compacted: the result of read_file")
    assert all(r.startswith("word0 word1") for r in results[-2:])  # the latest turns whole
    assert max(len(" ".join(m.get("content") or "" for m in r)) for r in requests) < 5000 * 4
