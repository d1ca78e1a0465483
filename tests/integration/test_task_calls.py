"""Every tool call of a task, read back from the histories: operators' re-runs, and the
rollback `towline rollback` runs in a workflow of its own, with their own outputs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.client import Client

from tests.helpers import plan, sh, ws
from towline.plan.load import check_data
from towline.starter import api, calls, logs


async def test_the_calls_of_a_task_are_its_reruns_and_its_rollback(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    spec = plan(
        ws(
            "w",
            sh(
                "deploy",
                "if [ -f tried ]; then echo deployed; else touch tried; echo busy >&2; exit 1; fi",
                on_failure={"strategy": "pause"},
                rollback={"tool": "shell", "with": {"command": ["sh", "-c", "echo undeployed"]}},
            ),
            sh("quiet", "true"),
        )
    )
    rid = await api.start_run(client, check_data(spec), plan_dir=tmp_path, task_queue=task_queue)
    for _ in range(100):
        w = (await api.get_status(client, rid)).workstreams.get("w")
        deploy = w.tasks.get("deploy") if w is not None else None
        if deploy is not None and deploy.status == "waiting":
            break
        await asyncio.sleep(0.1)
    await api.answer(client, rid, "w.deploy", "retry", by="ops")
    assert (await api.wait_run(client, rid)).status == "succeeded"
    wid = await api.rollback_run(client, rid, task_queue=task_queue)
    await client.get_workflow_handle(wid).result()

    made = await calls.task_calls(client, rid, "w", "deploy")
    assert [(c.title, c.status) for c in made] == [
        ("call 1 (shell)", "failed"),
        ("call 2 (shell)", "succeeded"),
        ("rollback (shell)", "succeeded"),
    ]
    assert made[0].error is not None
    assert made[0].error.output == "busy\n"
    assert made[1].outputs["stdout"] == "deployed\n"
    assert made[2].outputs["stdout"] == "undeployed\n"
    shown = {s.title: s.content for s in logs.call_sections(made)}
    assert shown["rollback (shell): succeeded; log: " + made[2].outputs["log"]] == b"undeployed\n"

    quiet = await calls.task_calls(client, rid, "w", "quiet")
    assert [c.title for c in quiet] == ["call 1 (shell)"]
    assert logs.call_sections(quiet) == [
        logs.Section("call 1 (shell): succeeded", b"(no output)\n")
    ]
    assert await calls.task_calls(client, "no-such-run", "w", "deploy") == []
