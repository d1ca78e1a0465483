"""Recurring runs on Temporal Schedules, on the dev server: runs on time as ordinary runs,
pause stops them, overlap skip holds, and the CLI drives it all."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client

from tests.e2e.test_cli import towline
from tests.helpers import echo, plan, ws
from towline.plan.load import check_data
from towline.starter import api, schedules

pytestmark = pytest.mark.timeout(120)

EVERY_2S = "*/2 * * * * * *"  # seconds minutes hours days months weekdays years


def _sid() -> str:
    return f"sched-{uuid.uuid4().hex[:8]}"


async def _runs_of(client: Client, sid: str) -> list[api.RunSummary]:
    query = f'TemporalScheduledById = "{sid}"'
    return [r async for r in api.list_runs(client, query=query, limit=100)]


async def _until(check: Any, what: str, timeout: float = 60.0) -> Any:
    for _ in range(int(timeout / 0.2)):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting until {what}")


async def test_a_schedule_runs_the_plan_on_time_as_ordinary_runs_and_pause_stops_it(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    spec = check_data({**plan(ws("w", echo("a")), name="nightly"), "labels": {"t": "x"}})
    sid = await schedules.create_schedule(
        client, spec, plan_dir=tmp_path, cron=EVERY_2S, schedule_id=_sid(), task_queue=task_queue
    )
    try:
        runs = await _until(
            lambda: _done(client, sid, 2), "two scheduled runs succeeded", timeout=30
        )
        for run in runs:
            # Temporal names each firing <schedule id>-<time>: that is the run's id.
            assert run.run_id.startswith(f"{sid}-")
            state = await api.get_status(client, run.run_id)
            assert state.run_id == run.run_id
            assert state.plan == "nightly"
            assert state.status == "succeeded"
        labelled = [r async for r in api.list_runs(client, labels={"t": "x"}, limit=100)]
        assert {r.run_id for r in runs} <= {r.run_id for r in labelled}
        described = await schedules.describe_schedule(client, sid)
        assert described.plan == "nightly"
        assert described.cron == EVERY_2S
        assert len(described.next_runs) >= 2
        gaps = {b - a for a, b in zip(described.next_runs, described.next_runs[1:], strict=False)}
        assert gaps == {timedelta(seconds=2)}

        await schedules.pause_schedule(client, sid)
        assert (await schedules.describe_schedule(client, sid)).paused
        await asyncio.sleep(1)  # a run started just before the pause may still register
        before = len(await _runs_of(client, sid))
        await asyncio.sleep(5)  # two firings' worth
        assert len(await _runs_of(client, sid)) == before

        await schedules.trigger_schedule(client, sid)  # now, paused or not
        await _until(
            lambda: _count_above(client, sid, before), "the triggered run started", timeout=20
        )
    finally:
        await schedules.delete_schedule(client, sid)


async def _done(client: Client, sid: str, count: int) -> list[api.RunSummary] | None:
    runs = [r for r in await _runs_of(client, sid) if r.status == "succeeded"]
    return runs if len(runs) >= count else None


async def _count_above(client: Client, sid: str, count: int) -> bool:
    return len(await _runs_of(client, sid)) > count


async def test_overlap_skip_starts_nothing_while_the_last_run_still_goes(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    # Each run waits for an approval: it is still going when the next firings come.
    spec = check_data(plan(ws("w", echo("a", approval=True))))
    sid = await schedules.create_schedule(
        client, spec, plan_dir=tmp_path, cron=EVERY_2S, schedule_id=_sid(), task_queue=task_queue
    )
    try:
        [first] = await _until(lambda: _runs_of(client, sid), "the first run started")
        await _until(lambda: _skipped(client, sid, 2), "two firings were skipped", timeout=30)
        assert [r.run_id for r in await _runs_of(client, sid)] == [first.run_id]
    finally:
        await schedules.delete_schedule(client, sid)
        await api.cancel_run(client, first.run_id)


async def _skipped(client: Client, sid: str, count: int) -> bool:
    return (await schedules.describe_schedule(client, sid)).skipped >= count


async def test_the_schedule_commands(dev_server: str, task_queue: str, tmp_path: Path) -> None:
    conn = ["--address", dev_server, "--task-queue", task_queue]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan(ws("w", echo("a")), name="weekly")))
    sid = _sid()

    made = await towline("schedule", "create", str(path), "--cron", "0 3 * * 1", "--id", sid, *conn)
    assert made.code == 0, made.err
    assert f"created schedule {sid} (plan weekly, cron 0 3 * * 1); next run" in made.out
    again = await towline(
        "schedule", "create", str(path), "--cron", "0 3 * * 1", "--id", sid, *conn
    )
    assert again.code == 2
    assert "already exists" in again.err
    bad = await towline("schedule", "create", str(path), "--cron", "every day", *conn)
    assert bad.code == 2
    assert "--cron 'every day'" in bad.err

    listed: list[dict[str, Any]] = []
    for _ in range(50):  # the schedule list is eventually consistent
        shown = await towline("schedule", "list", "--json", *conn)
        assert shown.code == 0, shown.err
        listed = [s for s in json.loads(shown.out) if s["schedule_id"] == sid]
        if listed:
            break
        await asyncio.sleep(0.2)
    [mine] = listed
    assert (mine["plan"], mine["cron"], mine["paused"]) == ("weekly", "0 3 * * 1", False)
    assert mine["next_runs"]  # Mondays at 03:00

    for verb in ("pause", "resume", "delete"):
        done = await towline("schedule", verb, sid, *conn)
        assert done.code == 0, done.err
    gone = await towline("schedule", "pause", sid, *conn)
    assert gone.code == 2
    assert f"unknown schedule '{sid}'" in gone.err
