"""What an ``agent`` task is given (its ``with``), and what its child workflow is told.

:class:`AgentArgs` is the plan's ``with:``, checked when the plan is loaded and again in
the workflow once its expressions are resolved (``${{ secrets.* }}`` stays text there:
it is resolved by the worker that calls the model). :class:`AgentRequest` is the input
of the agent's child workflow, :class:`AgentCarry` what it keeps across a
continue-as-new, :class:`AgentResult` what it hands back to its task.
"""

from __future__ import annotations

import difflib
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from towline.holding import Holding
from towline.plan.spec import Duration, WorkstreamSpec
from towline.state import Budget, ErrorInfo, Usage
from towline.toolcall import ToolContext

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# `model: auto` picks from this ladder unless the task gives its own: cheap first.
DEFAULT_LADDER = ("gpt-4.1-nano", "gpt-4.1-mini", "gpt-4.1")
WORKSPACE_TOOLS = ("list_files", "read_file", "search", "write_file", "apply_patch", "run")
READ_ONLY = frozenset({"list_files", "read_file", "search"})
BUILT_IN_GROUPS = ("workspace", "ask_human")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Price(_Strict):
    """US dollars per 1000 tokens."""

    prompt_per_1k: float = Field(ge=0)
    completion_per_1k: float = Field(ge=0)


class McpServerSpec(_Strict):
    """An MCP server whose tools the agent may call: ``command`` (stdio) or ``url``."""

    command: list[str] | None = Field(
        None, min_length=1, description="argv of a server started in the workspace (stdio)"
    )
    url: str | None = Field(None, description="a streamable HTTP endpoint, e.g. http://host/mcp")
    env: dict[str, str] = Field(default_factory=dict, description="command: added variables")
    headers: dict[str, str] = Field(default_factory=dict, description="url: HTTP headers")
    connect_timeout: Duration = Field(
        timedelta(seconds=30), description="how long the server may take to start and answer"
    )

    @model_validator(mode="after")
    def _one_server(self) -> McpServerSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError("give 'command' (stdio) or 'url' (streamable HTTP), exactly one")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("'url' must start with http:// or https://")
        return self


class AgentArgs(_Strict):
    """A model in a loop with tools, until it answers without calling one (or a limit)."""

    instructions: str = Field(
        min_length=1,
        description="what to do, e.g. 'The tests fail: ${{ failure.output }}. Make them pass.'",
    )
    model: str = Field(
        min_length=1,
        description="the model's name, or auto: chosen from ladder by the task's difficulty, "
        "and the next one up after a failed fix",
    )
    ladder: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LADDER),
        min_length=1,
        description="model: auto picks from these models, cheapest first",
    )
    base_url: str = Field(
        DEFAULT_BASE_URL, description="an OpenAI-compatible API; POSTs go to /chat/completions"
    )
    api_key: str | None = Field(
        None, description="sent as a Bearer token; normally ${{ secrets.OPENAI_API_KEY }}"
    )
    tools: list[str] = Field(
        default_factory=lambda: ["workspace"],
        description="tool groups the model may use: workspace (list_files, read_file, search, "
        "write_file, apply_patch, run), ask_human, and the names of servers under mcp",
    )
    mcp: dict[str, McpServerSpec] = Field(
        default_factory=dict, description="MCP servers by name: {command: [...]} or {url: ...}"
    )
    max_turns: int = Field(30, ge=1, le=1000, description="model calls at most")
    context_tokens: int = Field(
        128_000,
        ge=256,
        description="older tool results are compacted before the conversation passes this",
    )
    max_tokens: int | None = Field(None, ge=1, description="tokens the task may spend at most")
    max_cost_usd: float | None = Field(None, gt=0, description="US dollars it may spend at most")
    max_output_tokens: int | None = Field(None, ge=1, description="tokens per reply at most")
    temperature: float | None = Field(None, ge=0, le=2, description="sampling temperature")
    price: Price | None = Field(
        None, description="{prompt_per_1k, completion_per_1k} in USD, overriding the table"
    )
    memory: bool = Field(True, description="offer the closest past fixes of similar failures")
    request_timeout: Duration = Field(
        timedelta(minutes=10), description="how long one model reply may take"
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")) and "${{" not in url:
            raise ValueError(f"not an http(s) URL: {url!r} (e.g. https://api.openai.com/v1)")
        return url

    @model_validator(mode="after")
    def _known_tools(self) -> AgentArgs:
        known = [*BUILT_IN_GROUPS, *sorted(self.mcp)]
        for name in self.tools:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ValueError(
                    f"unknown tool group '{name}'{hint}: give workspace, ask_human, "
                    "or the name of a server under mcp"
                )
        return self

    def uses(self, group: str) -> bool:
        return group in self.tools


class Prepared(BaseModel):
    """What the agent learnt before its first turn (the ``agent.prepare`` activity)."""

    start_tree: str | None = Field(None, description="git tree of the workspace at the start")
    head: str | None = Field(None, description="the commit HEAD named at the start")
    mcp_tools: list[dict[str, Any]] = Field(
        default_factory=list, description="[{server, name, description, schema}]"
    )
    memory: list[dict[str, Any]] = Field(
        default_factory=list, description="the closest past fixes: [{summary, diff, score, run}]"
    )


class HumanAnswer(BaseModel):
    question: str
    text: str
    by: str
    at: datetime


class AgentCarry(BaseModel):
    """The conversation, kept across a continue-as-new of the agent's workflow."""

    prepared: Prepared | None = None
    model: str = ""
    messages: list[dict[str, Any]] = Field(default_factory=list)
    measured: tuple[int, int] | None = Field(
        None, description="(messages, tokens): the size the server counted for the last call"
    )
    turns: int = 0
    usage: Usage = Field(default_factory=Usage)
    compacted: int = Field(0, description="tool results compacted so far")
    answers: list[HumanAnswer] = Field(default_factory=list)
    waited: timedelta = Field(
        timedelta(0),
        description="time spent waiting for people or budget (not counted "
        "against the task's timeout)",
    )
    holding: Holding | None = None
    budget: Budget | None = None
    budget_told: Usage = Field(
        default_factory=Usage, description="what it had spent when it was last told the budget"
    )
    unreported: Usage = Field(
        default_factory=Usage, description="spent and not yet told to the workstream"
    )


class AgentRequest(BaseModel):
    """The agent child workflow's input."""

    context: ToolContext
    args: AgentArgs
    label: str = Field(description="which call of the task: main, main#2, fix1, ...")
    failure: str | None = Field(None, description="the failure a fix is for (message, output)")
    prior_failures: int = Field(0, description="fixes (or runs) of this task that did not work")
    workstream: WorkstreamSpec | None = Field(
        None, description="the workstream (its id and repo) when its workspace is held"
    )
    workspace_of: str = Field("", description="the run whose workspace it is")
    takeover: timedelta | None = None
    holding: Holding | None = None
    budget: Budget | None = None
    deadline: datetime = Field(description="when the task's attempt times out")
    max_history: int | None = Field(None, description="events before it continues-as-new")
    carry: AgentCarry | None = None


class AgentResult(BaseModel):
    """What the agent hands back to its task: outputs, or why it stopped short."""

    outputs: dict[str, Any] = Field(default_factory=dict)
    error: ErrorInfo | None = None
    usage: Usage = Field(default_factory=Usage)
    unreported: Usage = Field(
        default_factory=Usage, description="what the workstream has not been told yet"
    )
    holding: Holding | None = None
