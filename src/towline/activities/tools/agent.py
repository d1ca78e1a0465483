"""``agent``: a model in a loop with tools, until it answers without calling one.

Not an activity: the task runs a child workflow of its own, whose every model call and
tool call is an activity (:mod:`towline.workflows.agent`, :mod:`towline.activities.agent`).
Here is what plans and ``towline tools`` see of it: its input and its outputs.
"""

from __future__ import annotations

from towline.activities.base import Tool
from towline.agent.spec import AgentArgs

AGENT = Tool(
    name="agent",
    input_model=AgentArgs,
    description="A model in a loop with workspace, MCP and ask_human tools, durable per step.",
    activity=None,
    outputs=(
        "Outputs: ``summary`` (the model's final answer), ``turns`` (model calls), "
        "``tokens``, ``cost_usd``, ``diff`` (what it changed in the workspace, by reference "
        "when large), ``files`` (the paths it changed), ``model`` (the one used: with "
        "model: auto, the ladder's choice), ``stop`` (answered, max_turns, max_tokens, "
        "max_cost_usd, budget, timeout or error) and, when they apply, ``compacted`` "
        "(tool results compacted to fit context_tokens), ``memory`` (the runs whose past "
        "fixes it was offered) and ``answers`` (what people answered its questions). "
        "A limit that stops it fails the task, with these outputs."
    ),
)
