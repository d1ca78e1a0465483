"""The plan file: pydantic models for every key in the contract, and loading.

Models are strict (unknown keys are errors) and frozen. Short forms the contract allows
(``on_failure: pause``, ``approval: true``) are normalised to their long form here, so
the rest of towline only ever sees one shape. Semantic checks that need more than one
key at a time (ids, cycles, tools, expressions) live in :mod:`towline.plan.validate`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from towline.durations import format_duration, parse_duration

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$",
            "examples": ["90s", "10m", "48h", "3d"],
        }
    ),
]


def _duration_or_auto(value: Any) -> timedelta | str:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return parse_duration(value)
    except ValueError as e:
        raise ValueError(f"{e}; or auto, to take it from the run history") from None


# A task's timeout: a duration, or "auto", which the starter turns into one from the run
# history before the run starts (towline.estimates); workflows never see "auto".
TaskTimeout = Annotated[
    timedelta | Literal["auto"],
    BeforeValidator(_duration_or_auto),
    PlainSerializer(lambda v: v if v == "auto" else format_duration(v), return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^((\d+(\.\d+)?(ms|s|m|h|d|w))+|auto)$",
            "examples": ["90s", "10m", "auto"],
        }
    ),
]

Identifier = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", min_length=1, max_length=100)
]
FailurePolicy = Literal["fail_fast", "continue", "pause"]
Strategy = Literal["fail", "skip", "pause", "fix", "resolve"]

DEFAULT_MAX_PARALLEL = 4
# Workstreams a run has in flight at once; the rest wait their turn, in plan order.
DEFAULT_MAX_PARALLEL_WORKSTREAMS = 100
DEFAULT_TIMEOUT = timedelta(hours=1)
# How long a workstream whose worker died may wait before another worker holds its
# workspace and carries on (towline.workflows.affinity), and the least a plan may ask.
DEFAULT_TAKEOVER = timedelta(seconds=60)
MIN_TAKEOVER = timedelta(seconds=3)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ToolCallSpec(_Model):
    """A tool and its input: a task's fix call or rollback."""

    tool: str = Field(description="the tool's name, e.g. shell (see `towline tools`)")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


class RetrySpec(_Model):
    """Maps onto Temporal's RetryPolicy. Finite by default: nothing retries forever."""

    max_attempts: int = Field(3, ge=1, le=100)
    initial_interval: Duration = timedelta(seconds=1)
    backoff: float = Field(2.0, ge=1.0)
    max_interval: Duration = timedelta(minutes=5)


class OnFailureSpec(_Model):
    """What to do when a task has failed after its retries."""

    strategy: Strategy = "fail"
    timeout: Duration | None = Field(None, description="pause: how long to wait for an answer")
    default: Literal["retry", "skip", "abort"] | None = Field(
        None, description="pause: the answer applied when the timeout passes"
    )
    fix: ToolCallSpec | None = Field(None, description="fix: the tool call that repairs things")
    max_fixes: int = Field(1, ge=1, le=20)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return {"strategy": value} if isinstance(value, str) else value


class ApprovalSpec(_Model):
    """Wait for a person before the task runs."""

    required: bool = True
    timeout: Duration | None = None
    on_timeout: Literal["approve", "reject"] = "reject"

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return {"required": value} if isinstance(value, bool) else value


class CacheSpec(_Model):
    """Reuse a recent identical result of the same tool with the same input."""

    ttl: Duration
    key: str | list[str] | None = None


class RepoSpec(_Model):
    """Where a workstream's tasks run: a copy of a local path, or a clone of a git URL.

    Either way the tasks work in a workspace of their own (docs/workspaces.md), so two
    runs on one repository never touch each other or the user's checkout.
    """

    path: str | None = Field(
        None,
        description="a local folder, relative to the plan's folder; a git repository is "
        "cloned, any other folder copied",
    )
    url: str | None = Field(None, description="a git URL to clone (https, ssh, file://, ...)")
    ref: str | None = Field(
        None,
        description="the branch, tag or commit to start from; default: the repository's "
        "HEAD (for a path: its checked-out commit)",
    )
    keep: Literal["always", "on_failure", "never"] = Field(
        "on_failure",
        description="when to keep the workspace after the workstream ends: always, "
        "on_failure (removed when it succeeded) or never",
    )

    @model_validator(mode="after")
    def _one_source(self) -> RepoSpec:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of 'path' or 'url'")
        return self


class BudgetSpec(_Model):
    """Limits on what usage-bearing tasks (e.g. ``llm``) may spend across the whole run."""

    max_cost_usd: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)
    on_exceed: Literal["wait", "fail"] = Field(
        "wait",
        description="wait (default): the next usage-bearing task waits until "
        "`towline resume RUN --raise-budget ...`; fail: it fails with category budget",
    )


class BreakerSpec(_Model):
    """Circuit breakers for the targets the plan's tools call (a host, an MCP server).

    After ``failures`` consecutive failed tasks on one target, its breaker opens: tasks on
    that target wait for ``cooldown``, then one probe task tests it. ``breaker: false``
    turns breakers off for the plan (its tasks neither wait for nor feed them).
    """

    enabled: bool = True
    commands: bool = Field(
        False,
        description="also keep breakers for commands (shell, test_gate), by program; off by "
        "default, since a command that fails usually failed on its own, not its target",
    )
    failures: int = Field(5, ge=1, le=1000, description="consecutive failures that open it")
    cooldown: Duration = Field(
        timedelta(minutes=5), description="how long it stays open before a probe, e.g. 5m"
    )

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _positive_cooldown(self) -> BreakerSpec:
        if self.cooldown <= timedelta(0):
            raise ValueError("cooldown must be longer than 0s")
        return self


class WorkstreamSettings(_Model):
    max_parallel: int | None = Field(None, ge=1, le=10_000)
    failure_policy: FailurePolicy | None = None
    rollback: Literal["auto", "manual"] | None = Field(
        None,
        description="auto (default): a failed or cancelled workstream runs its rollbacks; "
        "manual: only `towline rollback RUN` does",
    )


class PlanSettings(WorkstreamSettings):
    timeout: Duration | None = Field(None, description="whole-run limit, e.g. 72h")
    max_parallel_workstreams: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="workstreams in flight at once; the rest wait their turn, in plan order "
        f"(default {DEFAULT_MAX_PARALLEL_WORKSTREAMS})",
    )
    budget: BudgetSpec | None = None
    breaker: BreakerSpec = BreakerSpec()
    takeover: Duration | None = Field(
        None,
        description="when the worker holding a workstream's workspace dies, another takes "
        "the workstream over within about this long (default 60s, at least 3s)",
    )

    @model_validator(mode="after")
    def _takeover_bound(self) -> PlanSettings:
        if self.takeover is not None and self.takeover < MIN_TAKEOVER:
            raise ValueError(f"takeover must be at least {format_duration(MIN_TAKEOVER)}")
        return self


class Defaults(_Model):
    """Task defaults; a task's own value wins."""

    timeout: Duration | None = None
    retry: RetrySpec | None = None
    on_failure: OnFailureSpec | None = None


class TaskSpec(_Model):
    id: Identifier
    tool: str = Field(description="the tool's name, e.g. shell (see `towline tools`)")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    needs: list[str] = Field(default_factory=list)
    priority: int = 0
    timeout: TaskTimeout | None = Field(
        None, description="one attempt's limit, e.g. 10m; auto: from the run history"
    )
    retry: RetrySpec | None = None
    on_failure: OnFailureSpec | None = None
    approval: ApprovalSpec | None = None
    rollback: ToolCallSpec | None = None
    if_: str | None = Field(None, alias="if")
    cache: CacheSpec | None = None


class ConcurrencySpec(_Model):
    """At most ``limit`` workstreams holding ``key`` run at once, across all runs: e.g.
    ``{key: repo-api}`` so two runs never push to one repository at the same time."""

    key: str = Field(min_length=1, max_length=200, description="what is shared, e.g. a repo")
    limit: int = Field(1, ge=1, le=10_000, description="holders at once (default 1)")


class WorkstreamSpec(_Model):
    id: Identifier
    needs: list[str] = Field(default_factory=list)
    repo: RepoSpec | None = None
    concurrency: ConcurrencySpec | None = None
    settings: WorkstreamSettings = WorkstreamSettings()
    defaults: Defaults = Defaults()
    tasks: list[TaskSpec] = Field(min_length=1)


NotifyEvent = Literal["waiting", "succeeded", "failed", "cancelled", "rolled_back"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = get_args(NotifyEvent)
_SECRET_EXPR = re.compile(r"\$\{\{\s*secrets\.[A-Za-z_][A-Za-z0-9_]*\s*\}\}")


class NotifySpec(_Model):
    """A webhook told of the run's transitions (towline.notifications has the body)."""

    on: list[NotifyEvent] = Field(
        default_factory=lambda: list(NOTIFY_EVENTS),
        min_length=1,
        description="the events to send: waiting (for a person), succeeded, failed, "
        "cancelled, rolled_back; default all",
    )
    webhook: str = Field(
        description="the URL the event is POSTed to, e.g. ${{ secrets.SLACK_WEBHOOK }} "
        "(a webhook URL is a credential: keep it a secret)"
    )
    format: Literal["auto", "json", "slack"] = Field(
        "auto",
        description="json: towline's body; slack: a Slack message; auto: slack for a "
        "hooks.slack.com URL, else json",
    )
    timeout: Duration = Field(
        timedelta(minutes=10),
        description="how long one event's delivery is retried before it is given up",
    )

    @model_validator(mode="after")
    def _webhook(self) -> NotifySpec:
        rest = _SECRET_EXPR.sub("", self.webhook)
        if "${{" in rest:
            raise ValueError("webhook: only ${{ secrets.NAME }} expressions may appear in it")
        if rest == self.webhook:  # no secret: a literal URL
            parts = urlsplit(self.webhook)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(
                    "webhook must be an http(s) URL or name a secret: ${{ secrets.NAME }}"
                )
        if self.timeout <= timedelta(0):
            raise ValueError("timeout must be longer than 0s")
        return self


class PlanSpec(_Model):
    version: Literal[1]
    name: str = Field(min_length=1, max_length=100)
    labels: dict[str, str] = Field(default_factory=dict)
    settings: PlanSettings = PlanSettings()
    notify: list[NotifySpec] = Field(
        default_factory=list, description="webhooks told when the run waits, fails or ends"
    )
    defaults: Defaults = Defaults()
    workstreams: list[WorkstreamSpec] = Field(min_length=1)
