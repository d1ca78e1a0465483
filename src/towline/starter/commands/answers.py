"""Steering a run: the answers to a waiting task (``towline approve``, ``reject``,
``skip``, ``abort``, ``retry``), ``retry RUN``, the answer to an agent's question
(``answer``), ``rollback``, ``pause`` and ``resume``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from towline.plan.spec import BudgetSpec
from towline.starter import api, local
from towline.starter import args as checks
from towline.starter.commands import common
from towline.starter.completion import task_ids
from towline.starter.registry import (
    CONNECTION,
    NOT_SUCCEEDED,
    OK,
    RUN,
    TASK,
    UsageError,
    arg,
    command,
)

_ANSWER = (
    arg("--note", help="a note recorded with the answer"),
    arg("--by", help="who answers (default: your user name)"),
)


async def _answer(args: argparse.Namespace) -> int:
    client = await common.client(args)
    if args.command == "retry" and args.task is None:
        rid = await api.retry_run(
            client, args.run_id, task_queue=args.task_queue, new_id=args.new_id
        )
        link = local.web_ui_link(args.address, args.namespace, rid)
        common.out().print(
            f"started run {rid}, a retry of {args.run_id}\nWeb UI: {link}\n"
            f"follow it with: towline watch {rid}"
        )
        return OK
    done = await api.answer(
        client, args.run_id, args.task, args.command, by=args.by, note=args.note
    )
    common.out().print(done)
    return OK


for _name, _what in (
    ("approve", "approve a task waiting for approval"),
    ("reject", "reject a task waiting for approval (it fails)"),
    ("skip", "skip a failed task waiting for an operator"),
    ("abort", "fail a task waiting for an operator"),
):
    command(_name, _what, CONNECTION, RUN, TASK, *_ANSWER)(_answer)
command(
    "retry",
    "retry a failed task waiting for an operator",
    CONNECTION,
    RUN,
    arg("task", metavar="TASK", nargs="?", help="workstream.task", completer=task_ids),
    arg("--id", dest="new_id", type=checks.new_run_id, help="the new run's id (retry RUN only)"),
    *_ANSWER,
    description="retry RUN TASK: retry a failed task waiting for an operator; "
    "retry RUN: a new run, linked to a finished failed run, that reuses the "
    "succeeded tasks' outputs and runs only the rest",
    links=True,
)(_answer)


@command(
    "answer",
    "answer the question an agent task asked (ask_human)",
    CONNECTION,
    RUN,
    TASK,
    arg("text", metavar="TEXT", help="the answer, sent to the agent as it is"),
    arg("--by", help="who answers (default: your user name)"),
)
async def _answer_question(args: argparse.Namespace) -> int:
    client = await common.client(args)
    done = await api.answer_question(client, args.run_id, args.task, args.text, by=args.by)
    common.out().print(done, markup=False)
    return OK


@command(
    "rollback",
    "run the rollbacks of a finished run's succeeded tasks, newest first",
    CONNECTION,
    RUN,
    arg("--wait", action="store_true", help="wait for the rollbacks to finish"),
    links=True,
)
async def _rollback(args: argparse.Namespace) -> int:
    client = await common.client(args)
    wid = await api.rollback_run(client, args.run_id, task_queue=args.task_queue)
    out = common.out()
    out.print(f"rolling back run {args.run_id} (workflow {wid})")
    if not args.wait:
        return OK
    await api.wait_closed(client.get_workflow_handle(wid))  # the status says what failed
    state = await api.get_status(client, args.run_id)
    common.summary(state, local.web_ui_link(args.address, args.namespace, args.run_id), out)
    return OK if state.status == "rolled_back" else NOT_SUCCEEDED


def _budget_args(items: Sequence[str]) -> BudgetSpec | None:
    if not items:
        return None
    values: dict[str, float | int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in ("max_cost_usd", "max_tokens"):
            raise UsageError(f"--raise-budget {item!r}: expected max_cost_usd=N or max_tokens=N")
        check = checks.token_count if key == "max_tokens" else checks.amount
        try:
            values[key] = check(value)
        except argparse.ArgumentTypeError as e:
            raise UsageError(f"--raise-budget {item!r}: {e}") from None
    return BudgetSpec.model_validate(values)


async def _pause(args: argparse.Namespace) -> int:
    raise_to = _budget_args(getattr(args, "raise_budget", []))
    client = await common.client(args)
    if raise_to is not None:
        common.out().print(await api.raise_budget(client, args.run_id, raise_to))
    change = api.pause_run if args.command == "pause" else api.resume_run
    common.out().print(await change(client, args.run_id, by=args.by))
    return OK


command(
    "pause",
    "stop starting new tasks; running ones finish",
    CONNECTION,
    RUN,
    arg("--by", help="who does it (default: your user name)"),
)(_pause)
command(
    "resume",
    "start scheduling tasks again",
    CONNECTION,
    RUN,
    arg("--by", help="who does it (default: your user name)"),
    arg(
        "--raise-budget",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="new budget limits: max_cost_usd=5, max_tokens=100000",
    ),
)(_pause)
