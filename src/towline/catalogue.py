"""What towline knows about each tool, in one place, for workflow code and workers alike.

A tool's *implementation* is an activity (:mod:`towline.activities.tools`); its *facts*
decide how workflows call it: whether it needs the workstream's workspace (and so must
run on the worker that holds it), whether it may change that workspace (and so is
followed by a snapshot), whether it runs inside the workflow (a durable timer), whether
it has a task queue of its own (so workers can cap its rate on the server), whether it
reports usage (and so waits while the run's budget is spent), what its circuit
breaker guards, whether it waits by polling (``pr`` with ``wait:``), and whether it runs
as a child workflow of its own (``agent``). The agent's own steps (its model calls and
tool calls, :mod:`towline.activities.agent`) have facts too, in :data:`STEPS`: they are
not tools a plan names. Pure data: workflows import it without touching the tools'
libraries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BreakerKind = Literal["command", "host", "mcp"]


@dataclass(frozen=True)
class ToolFacts:
    name: str
    workspace: bool = True  # reads or writes the workstream's folder
    changes_workspace: bool = True  # may leave it changed: snapshot after success
    in_workflow: bool = False  # no activity: the workflow does it (a timer)
    own_queue: bool = False  # activities on "<queue>-<tool>", rate-capped by the server
    usage: bool = False  # reports tokens and cost; starts only while the budget lasts
    breaker: BreakerKind | None = None  # what a failure says is broken
    polls: bool = False  # with `wait:` it answers "not yet" until done: retried to poll
    child_workflow: bool = False  # run by a child workflow of its own, not an activity

    def queue(self, base: str) -> str | None:
        """Its own task queue, when it has one; None for the workflow's."""
        return f"{base}-{self.name}" if self.own_queue else None


_FACTS = (
    ToolFacts("echo", workspace=False, changes_workspace=False),
    ToolFacts("wait", workspace=False, changes_workspace=False, in_workflow=True),
    ToolFacts("http", workspace=False, changes_workspace=False, breaker="host"),
    ToolFacts(
        "llm", workspace=False, changes_workspace=False, own_queue=True, usage=True, breaker="host"
    ),
    ToolFacts("shell", breaker="command"),
    # A test gate runs the project's tests; by declaration it leaves no change worth
    # keeping (caches and reports are rebuilt), so no snapshot follows it.
    ToolFacts("test_gate", changes_workspace=False, breaker="command"),
    ToolFacts("patch.apply"),
    ToolFacts("patch.revert"),
    ToolFacts("git"),
    ToolFacts("mcp", breaker="mcp"),
    # Pushes the workspace's HEAD and talks to a forge: it needs the workspace (on the
    # worker that holds it) but leaves it as it was, so no snapshot follows it.
    ToolFacts("pr", changes_workspace=False, polls=True),
    # A model in a loop with tools: its conversation is a child workflow (workflows/agent.py)
    # whose steps (STEPS below) touch the workspace on its holder.
    ToolFacts("agent", usage=True, child_workflow=True),
)
CATALOGUE: dict[str, ToolFacts] = {f.name: f for f in _FACTS}

_STEPS = (
    ToolFacts("agent.prepare"),  # may make the folder a git repository
    ToolFacts("agent.model", workspace=False, changes_workspace=False, usage=True),
    ToolFacts("agent.read", changes_workspace=False),
    ToolFacts("agent.write"),
    ToolFacts("agent.mcp"),  # a stdio server runs in the workspace, and may change it
    ToolFacts("agent.finish", changes_workspace=False),
    ToolFacts("agent.record", workspace=False, changes_workspace=False),
)
STEPS: dict[str, ToolFacts] = {f.name: f for f in _STEPS}


def facts(tool: str) -> ToolFacts:
    """The facts of ``tool``; a tool not listed (a new one) is assumed to need and change
    the workspace, the safe side for both affinity and snapshots."""
    return CATALOGUE.get(tool) or STEPS.get(tool) or ToolFacts(tool)


def own_queue_tools() -> list[str]:
    """Tools with a task queue of their own, sorted."""
    return sorted(f.name for f in _FACTS if f.own_queue)
