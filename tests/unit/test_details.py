"""The run's "current details" in the Web UI: a markdown progress table."""

from __future__ import annotations

from towline.state import RunState, TaskState, WorkstreamState
from towline.workflows.details import progress_markdown


def _run(**workstreams: WorkstreamState) -> RunState:
    return RunState(run_id="bump-7f3a2c", plan="bump", status="running", workstreams=workstreams)


def test_the_run_workflow_view_counts_planned_tasks_per_workstream() -> None:
    state = _run(
        api=WorkstreamState(status="succeeded"),
        web=WorkstreamState(status="running"),
        docs=WorkstreamState(status="pending"),
    )
    text = progress_markdown(state, task_counts={"api": 2, "web": 1, "docs": 3})
    assert text.splitlines() == [
        "**running** · run `bump-7f3a2c` · plan `bump`",
        "",
        "| workstream | status | tasks | note |",
        "|---|---|---|---|",
        "| api | succeeded | 2 tasks |  |",
        "| web | running | 1 task |  |",
        "| docs | pending | 3 tasks |  |",
    ]


def test_a_full_status_counts_tasks_by_status_finished_first() -> None:
    tasks = {
        "a": TaskState(tool="shell", status="succeeded"),
        "b": TaskState(tool="shell", status="running"),
        "c": TaskState(tool="shell", status="pending"),
        "d": TaskState(tool="shell", status="succeeded"),
        "e": TaskState(tool="shell", status="failed"),
    }
    text = progress_markdown(_run(api=WorkstreamState(status="running", tasks=tasks)))
    assert "| api | running | 2 succeeded, 1 failed, 1 running, 1 pending |  |" in text


def test_reasons_stay_inside_their_cell() -> None:
    state = _run(
        api=WorkstreamState(status="waiting", reason="deploy: approval | or\nelse " + "x" * 300)
    )
    state.reason = "waiting: api.deploy"
    head, _, _, _, row = progress_markdown(state).splitlines()
    assert head.endswith(" · waiting: api.deploy")
    assert row.startswith("| api | waiting |  | deploy: approval \\| or else xxx")
    assert row.count(" | ") == 3  # four cells, no more
    assert row.endswith("… |")
    assert len(row) < 200
