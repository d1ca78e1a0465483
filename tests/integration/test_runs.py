"""Runs on a real Temporal dev server: ordering, parallelism, failure policies, outputs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.conftest import RunPlan
from tests.helpers import echo, ledger_task, max_concurrency, plan, sh, ws
from towline.plan.load import check_data
from towline.starter import api

pytestmark = pytest.mark.timeout(90)


async def test_diamond_runs_each_task_after_its_needs(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(
            ws(
                "w",
                echo("a"),
                echo("b", needs=["a"]),
                echo("c", needs=["a"]),
                echo("d", needs=["b", "c"]),
            )
        )
    )
    assert state.status == "succeeded"
    t = state.workstreams["w"].tasks
    assert all(x.status == "succeeded" for x in t.values())
    assert t["b"].started_at >= t["a"].ended_at  # type: ignore[operator]
    assert t["c"].started_at >= t["a"].ended_at  # type: ignore[operator]
    assert t["d"].started_at >= max(t["b"].ended_at, t["c"].ended_at)  # type: ignore[type-var, operator]


async def test_higher_priority_ready_tasks_start_first(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(
            ws(
                "w",
                echo("low", priority=0),
                echo("high", priority=10),
                echo("mid", priority=5),
                settings={"max_parallel": 1},
            )
        )
    )
    t = state.workstreams["w"].tasks
    order = sorted(t, key=lambda k: t[k].started_at)  # type: ignore[arg-type, return-value]
    assert order == ["high", "mid", "low"]


async def test_max_parallel_is_never_exceeded(run_plan: RunPlan, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    tasks = [ledger_task(f"t{i}", ledger, seconds=0.4) for i in range(8)]
    state = await run_plan(plan(ws("w", *tasks, settings={"max_parallel": 3})))
    assert state.status == "succeeded"
    assert max_concurrency(ledger) == 3


async def test_fail_fast_cancels_running_and_pending_tasks(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(
            ws(
                "w",
                sh("broken", "sleep 0.5; exit 3"),
                sh("slow", "sleep 60"),
                echo("after", needs=["slow"]),
            )
        )
    )
    t = state.workstreams["w"].tasks
    assert state.status == "failed"
    assert state.workstreams["w"].status == "failed"
    assert t["broken"].status == "failed"
    assert t["broken"].error is not None
    assert t["broken"].error.category == "tool"
    assert t["slow"].status == "cancelled"
    assert t["after"].status == "cancelled"


async def test_continue_skips_only_the_dependents_of_a_failure(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(
            ws(
                "w",
                sh("broken", "exit 1"),
                echo("dependent", needs=["broken"]),
                echo("grandchild", needs=["dependent"]),
                echo("independent"),
            ),
            failure_policy="continue",
        )
    )
    t = state.workstreams["w"].tasks
    assert state.status == "failed"
    assert t["broken"].status == "failed"
    assert t["dependent"].status == "skipped"
    assert "broken" in (t["dependent"].reason or "")
    assert t["grandchild"].status == "skipped"
    assert t["independent"].status == "succeeded"


async def test_outputs_flow_between_tasks_and_workstreams(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(
            ws(
                "api",
                echo("version", **{"with": {"v": 7, "tag": "x"}}),
                echo(
                    "use",
                    needs=["version"],
                    **{
                        "with": {
                            "n": "${{ tasks.version.outputs.v }}",
                            "s": "v${{ tasks.version.outputs.v }}-${{ workstream.id }}",
                        }
                    },
                ),
            ),
            ws(
                "web",
                echo(
                    "consume",
                    needs=["api.use"],
                    **{"with": {"got": "${{ tasks.api.use.outputs.n }}", "run": "${{ run.id }}"}},
                ),
            ),
        ),
        run_id="outputs-flow-1",
    )
    assert state.status == "succeeded"
    assert state.workstreams["api"].tasks["use"].outputs == {"n": 7, "s": "v7-api"}
    assert state.workstreams["web"].tasks["consume"].outputs == {
        "got": 7,
        "run": "outputs-flow-1",
    }, state.workstreams["web"]


async def test_cross_workstream_need_on_failed_task_skips_the_dependent(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(
            ws("api", sh("broken", "exit 1")),
            ws("web", echo("deploy", needs=["api.broken"]), echo("docs")),
            failure_policy="continue",
        )
    )
    web = state.workstreams["web"].tasks
    assert web["deploy"].status == "skipped"
    assert web["docs"].status == "succeeded"
    assert state.status == "failed"


async def test_workstream_needs_wait_for_and_skip_after_failure(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(
            ws("first", sh("broken", "exit 1")),
            ws("second", echo("x"), needs=["first"]),
            ws("other", echo("y")),
            failure_policy="continue",
        )
    )
    assert state.workstreams["first"].status == "failed"
    assert state.workstreams["second"].status == "skipped"
    assert state.workstreams["other"].status == "succeeded"


async def test_retries_follow_the_task_retry_policy(run_plan: RunPlan, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    script = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 3 ]"
    )
    state = await run_plan(
        plan(ws("w", sh("flaky", script, retry={"max_attempts": 4, "initial_interval": "100ms"})))
    )
    flaky = state.workstreams["w"].tasks["flaky"]
    assert flaky.status == "succeeded"
    assert flaky.attempts == 3
    assert counter.read_text().strip() == "3"


async def test_retries_stop_at_max_attempts(run_plan: RunPlan, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    script = f"echo x >> {counter}; exit 1"
    state = await run_plan(
        plan(ws("w", sh("always", script, retry={"max_attempts": 2, "initial_interval": "100ms"})))
    )
    t = state.workstreams["w"].tasks["always"]
    assert t.status == "failed"
    assert t.attempts == 2
    assert len(counter.read_text().splitlines()) == 2


async def test_if_false_skips_the_task_and_its_dependents(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(
            ws(
                "w",
                echo("check", **{"with": {"deploy": False, "env": "prod"}}),
                echo("deploy", needs=["check"], **{"if": "${{ tasks.check.outputs.deploy }}"}),
                echo("after", needs=["deploy"]),
                echo("prod", needs=["check"], **{"if": "tasks.check.outputs.env == 'prod'"}),
            )
        )
    )
    t = state.workstreams["w"].tasks
    assert t["deploy"].status == "skipped"
    assert t["after"].status == "skipped"
    assert t["prod"].status == "succeeded"
    assert state.status == "succeeded"


async def test_run_timeout_stops_the_run(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(ws("w", {"id": "long", "tool": "wait", "with": {"for": "1h"}}), timeout="2s")
    )
    assert state.status == "failed"
    assert "timeout" in (state.reason or "")
    assert state.workstreams["w"].tasks["long"].status == "cancelled"


async def test_status_is_live_and_searchable(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    spec = check_data(
        plan(ws("w", {"id": "pause", "tool": "wait", "with": {"for": "2s"}}), name="searchable")
    )
    rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=task_queue)
    while True:
        pause = (await api.get_status(client, rid)).workstreams["w"].tasks.get("pause")
        if pause is not None and pause.status == "running":
            break
        await asyncio.sleep(0.1)
    final = await api.wait_run(client, rid)
    assert final.status == "succeeded"
    query = f'WorkflowId = "{rid}" AND TowlineStatus = "succeeded" AND TowlinePlan = "searchable"'
    for _ in range(100):  # visibility is eventually consistent
        found = [w.id async for w in client.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.1)
    assert found == [rid]
    ws_handle = await client.get_workflow_handle(f"{rid}/w").describe()
    assert ws_handle.id == f"{rid}/w"


async def test_starting_a_run_with_a_taken_id_is_refused(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    spec = check_data(plan(ws("w", echo("a"))))
    rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=task_queue)
    with pytest.raises(api.RunExists):
        await api.start_run(client, spec, plan_dir=tmp_path, task_queue=task_queue, run_id=rid)
    await api.wait_run(client, rid)


async def test_unknown_run_is_reported(client: Client) -> None:
    with pytest.raises(api.UnknownRun):
        await api.get_status(client, "no-such-run")


async def test_plan_max_parallel_caps_tasks_in_flight_across_workstreams(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    state = await run_plan(
        plan(
            ws("a", *(ledger_task(f"a{i}", ledger, seconds=0.3) for i in range(5))),
            ws("b", *(ledger_task(f"b{i}", ledger, seconds=0.3) for i in range(5))),
            ws(
                "c",
                *(ledger_task(f"c{i}", ledger, seconds=0.3) for i in range(3)),
                settings={"max_parallel": 1},
            ),
            max_parallel=3,
        )
    )
    assert state.status == "succeeded"
    assert max_concurrency(ledger) == 3


async def test_a_workspace_that_cannot_be_prepared_says_why(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    state = await run_plan(plan(ws("w", echo("a"), repo={"path": "no/such/folder"})))
    assert state.status == "failed"
    assert "no/such/folder" in (state.workstreams["w"].reason or "")
