"""``wait``: a durable Temporal timer, for plans that span days (``with: {for: 3d}``).

It is not an activity: the workstream workflow sleeps on a server-side timer
(see ``towline.workflows.task``), so no worker needs to be up while it waits.
"""

from __future__ import annotations

from pydantic import Field

from towline.activities.base import Tool, ToolInput
from towline.plan.spec import Duration


class WaitInput(ToolInput):
    for_: Duration = Field(alias="for", description="how long to wait, e.g. 3d")


WAIT = Tool(
    name="wait",
    input_model=WaitInput,
    description="Wait durably for a duration (a Temporal timer; survives restarts).",
    activity=None,
)
