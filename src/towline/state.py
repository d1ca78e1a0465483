"""The status vocabulary, the search attributes, and the state the workflows report.

Runs, workstreams and tasks share one vocabulary (docs/plan.md, "Statuses": the project's
docs are its contract with users, extended, never broken). The models here cross
the boundary between workflows, the CLI and scripts, so they are plain pydantic data.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio.common import SearchAttributeKey

from towline.holding import Holding, Restore
from towline.notifications import NotifyCarry
from towline.plan.spec import (
    BreakerSpec,
    Defaults,
    FailurePolicy,
    PlanSpec,
    WorkstreamSpec,
)

Status = Literal[
    "pending", "waiting", "running", "succeeded", "failed", "skipped", "cancelled", "rolled_back"
]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "skipped", "cancelled", "rolled_back"})

# Registered on the server by `towline up` and the test fixtures; see docs/operations.md.
SEARCH_ATTRIBUTES: dict[str, str] = {
    "TowlineStatus": "Keyword",
    "TowlinePlan": "Keyword",
    "TowlineLabels": "KeywordList",
}
STATUS_KEY = SearchAttributeKey.for_keyword("TowlineStatus")
PLAN_KEY = SearchAttributeKey.for_keyword("TowlinePlan")
LABELS_KEY = SearchAttributeKey.for_keyword_list("TowlineLabels")

RUN_WORKFLOW = "RunWorkflow"
# The engine new runs get (towline.workflows.run); runs in flight keep the one they have.
RUN_ENGINE = 2

# Temporal takes fairness keys of at most 64 bytes.
FAIRNESS_KEY_BYTES = 64


def fairness_key(run_id: str) -> str:
    """The key a run's tasks share on their task queues, so runs take turns.

    The run id itself when it fits; a longer id keeps its start and a digest of the
    whole, so two long ids that share a prefix still get keys of their own.
    """
    if len(run_id.encode()) <= FAIRNESS_KEY_BYTES:
        return run_id
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:16]
    head = run_id.encode()[: FAIRNESS_KEY_BYTES - len(digest) - 1].decode(errors="ignore")
    return f"{head}~{digest}"


# The memo of a run that works in another run's workspaces (a retry): that run's id.
WORKSPACE_OF_MEMO = "towline.workspace_of"
WORKSTREAM_WORKFLOW = "WorkstreamWorkflow"


def workstream_workflow_id(run_id: str, workstream: str) -> str:
    return f"{run_id}/{workstream}"


class Usage(BaseModel):
    tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: Usage) -> Usage:
        return Usage(tokens=self.tokens + other.tokens, cost_usd=self.cost_usd + other.cost_usd)

    def since(self, before: Usage) -> Usage:
        """What was spent after ``before`` (both running totals), never below zero."""
        return Usage(
            tokens=max(self.tokens - before.tokens, 0),
            cost_usd=max(self.cost_usd - before.cost_usd, 0.0),
        )


TOOL_USAGE_SIGNAL = "tool_usage"


class UsageReport(BaseModel):
    """What a tool call's attempt spent, told by the attempt itself when it failed or was
    cancelled (towline.activities.usage); ``key`` makes a report delivered twice count once."""

    workstream: str
    task: str
    key: str = Field(description="<activity id>#<attempt>")
    usage: Usage


class Budget(BaseModel):
    """The run's budget and what has been spent, as the run tells its workstreams."""

    max_cost_usd: float | None = None
    max_tokens: int | None = None
    on_exceed: Literal["wait", "fail"] = "wait"
    spent: Usage = Field(default_factory=Usage)

    def used(self) -> float:
        """The share spent of the tighter limit: 1.0 is all of it."""
        shares = [0.0]
        if self.max_cost_usd:
            shares.append(self.spent.cost_usd / self.max_cost_usd)
        if self.max_tokens:
            shares.append(self.spent.tokens / self.max_tokens)
        return max(shares)

    def exhausted(self) -> str | None:
        """Why no more usage-bearing work may start, or None."""
        if self.max_cost_usd is not None and self.spent.cost_usd >= self.max_cost_usd:
            return f"budget spent: ${self.spent.cost_usd:.4f} of ${self.max_cost_usd:g}"
        if self.max_tokens is not None and self.spent.tokens >= self.max_tokens:
            return f"budget spent: {self.spent.tokens} of {self.max_tokens} tokens"
        return None


class ErrorInfo(BaseModel):
    category: str
    message: str
    hint: str | None = None
    output: str | None = Field(None, description="the tail of what the tool printed")


# "answer": an agent task waits for a person to answer its question (towline answer).
WaitingFor = Literal["approval", "operator", "budget", "breaker", "answer"]
Answer = Literal["approve", "reject", "retry", "skip", "abort"]


class Decision(BaseModel):
    """A person's answer to a waiting task (or the default applied at a timeout)."""

    answer: Answer
    by: str
    at: datetime
    note: str | None = None


class AnswerRequest(BaseModel):
    """An answer to a waiting task, as sent by ``towline approve|reject|retry|skip|abort``."""

    task: str
    by: str = "someone"
    note: str | None = None


class RunAnswer(BaseModel):
    """An answer to an agent's question, given to the run (the Web UI's update ``answer``)."""

    task: str = Field(description="workstream.task, e.g. api.fix")
    text: str
    by: str = "someone (Web UI)"


class TaskState(BaseModel):
    tool: str
    status: Status = "pending"
    waiting_for: WaitingFor | None = None
    attempts: int = 0
    runs: int = Field(0, description="times the tool was called (operator retries, fixes)")
    fixes: int = 0
    decisions: list[Decision] = Field(default_factory=list)
    rollback_error: ErrorInfo | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: ErrorInfo | None = None
    reason: str | None = Field(None, description="why the task is waiting or was skipped")
    usage: Usage = Field(default_factory=Usage)
    cached: bool = False
    started_at: datetime | None = None
    ended_at: datetime | None = None
    wait_deadline: datetime | None = Field(
        None, description="when the wait for a person times out (kept across continue-as-new)"
    )
    fix_outputs: dict[str, Any] | None = Field(
        None, description="what the last fix by an agent returned (summary, diff, cost...)"
    )


class WorkstreamState(BaseModel):
    status: Status = "pending"
    tasks: dict[str, TaskState] = Field(default_factory=dict)
    counts: dict[str, int] = Field(
        default_factory=dict,
        description="tasks by status, as the run keeps it (its tasks are read on demand)",
    )
    reason: str | None = None
    holding: Holding | None = Field(
        None, description="its workspace: the worker holding it, its newest snapshot"
    )
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def usage(self) -> Usage:
        total = Usage()
        for t in self.tasks.values():
            total = total.add(t.usage)
        return total


class TaskView(BaseModel):
    """What a task in another workstream may see of a finished upstream task."""

    status: Status
    outputs: dict[str, Any] = Field(default_factory=dict)


class RunState(BaseModel):
    run_id: str
    plan: str
    status: Status = "pending"
    workstreams: dict[str, WorkstreamState] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    reason: str | None = None
    retry_of: str | None = Field(None, description="the failed run this one retries")
    started_at: datetime | None = None
    ended_at: datetime | None = None


class WorkstreamEnd(BaseModel):
    """How a workstream ended, as it tells its run (``workstream_ended``): what the run
    keeps of it, so a run of thousands of workstreams answers ``status`` on its own."""

    status: Status
    reason: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)


class RunCarry(BaseModel):
    """What a run carries across continue-as-new (engine 2): the rest is in its plan."""

    state: RunState
    finished_tasks: dict[str, TaskView] = Field(
        default_factory=dict, description="'ws.task' -> tasks other workstreams need, ended"
    )
    slots: dict[str, int] = Field(default_factory=dict, description="plan-level slots held")
    live: dict[str, Usage] = Field(
        default_factory=dict, description="usage running workstreams reported so far"
    )
    paused_by: str | None = None
    budget: Budget | None = None
    waiting: dict[str, list[str]] = Field(default_factory=dict)
    stopping: str | None = None
    timed_out: bool = False
    keys_wanted: dict[str, int] = Field(
        default_factory=dict, description="workstreams waiting for a concurrency key: slots"
    )
    keys_held: list[str] = Field(default_factory=list, description="granted, not started")


class RunInput(BaseModel):
    run_id: str
    plan: PlanSpec
    plan_dir: str
    retry_of: str | None = None
    workspace_of: str | None = Field(
        None, description="the run whose workspaces this one uses (the first of a retry chain)"
    )
    reuse: dict[str, TaskView] = Field(
        default_factory=dict,
        description="'ws.task' -> the outputs of tasks that succeeded in the run retried",
    )
    max_history: int | None = Field(
        None, description="events before a workflow continues-as-new (default: towline's)"
    )
    notified: NotifyCarry | None = Field(
        None, description="notifications' sequence and waits, kept across continue-as-new"
    )
    restore: dict[str, Restore] = Field(
        default_factory=dict,
        description="workstream -> the workspace as the run retried left it (its snapshot)",
    )
    # 2: runs started since towline ran wide runs (run_v2); absent (1) in the input of
    # runs started before, which go on with the engine they started with.
    engine: int = 1
    carry: RunCarry | None = Field(None, description="state kept across continue-as-new")


class WorkstreamInput(BaseModel):
    run_id: str
    plan_dir: str
    plan: str = Field("", description="the plan's name")
    spec: WorkstreamSpec
    plan_defaults: Defaults
    max_parallel: int
    failure_policy: FailurePolicy
    exports: list[str] = Field(
        default_factory=list, description="tasks other workstreams need; reported when done"
    )
    upstream: dict[str, TaskView] = Field(
        default_factory=dict, description="finished tasks of other workstreams, by 'ws.task'"
    )
    carry: WorkstreamState | None = Field(None, description="state kept across continue-as-new")
    workspace: str | None = None
    # Set by runs since towline made no scratch folder for tools that need none; absent
    # (False) in the input of workstreams started before, which made one, and replay so.
    workspace_free: bool = Field(
        False, description="no repo and only tools that need no folder: make none"
    )
    paused: bool = False
    breaker: BreakerSpec = Field(default_factory=BreakerSpec)
    run_slots: bool = Field(
        False, description="tasks in flight need slots from the run (a run-wide max_parallel)"
    )
    slots_held: int = Field(0, description="slots granted by the run, kept across continue-as-new")
    budget: Budget | None = None
    rollback: Literal["auto", "manual"] = "auto"
    reuse: dict[str, TaskView] = Field(
        default_factory=dict, description="task id -> outputs reused from the run retried"
    )
    retry_of: str | None = None
    workspace_of: str | None = None
    # Set by runs since workstreams send their signals one at a time; absent (False) in
    # the input of workstreams started before, which replay as they ran.
    signals_in_order: bool = False
    max_history: int | None = Field(
        None, description="events before it continues-as-new (default: towline's)"
    )
    # Set by runs since workspaces are held by one worker and taken over from snapshots
    # when it dies; absent (None) in the input of workstreams started before, which
    # replay without holding.
    takeover: timedelta | None = Field(
        None, description="how soon a workspace whose holder died is held elsewhere"
    )
    restore: Restore | None = Field(
        None, description="start from this workspace (a retry: the run retried's snapshot)"
    )
    # Set by engine-2 runs: the workstream tells the run how it ended (the run may have
    # continued-as-new since it started it), and its usage only when the run has a budget.
    report_end: bool = False
    report_usage: bool = True
    # Set by engine-2 runs since they ask for it: a workstream that ends on its own tells
    # the run nothing (its result reaches the execution of the run that started it), unless
    # the run asked it to report (``report_end``): the run does before it continues-as-new.
    # A cancelled workstream reports always.
    report_when_asked: bool = False
