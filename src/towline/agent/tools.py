"""The tools an agent's model is offered, as chat-completions function tools.

Pure data, for the workflow that sends them with each model call; the workspace tools'
implementations are in :mod:`towline.activities.agent_tools`.
"""

from __future__ import annotations

from typing import Any


def schemas() -> list[dict[str, Any]]:
    """The workspace tools as chat-completions function tools."""

    def fn(
        name: str, description: str, props: dict[str, Any], required: list[str]
    ) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": name,
                "description": description,
                "parameters": {"type": "object", "properties": props, "required": required},
            },
        }

    path = {"type": "string", "description": "relative to the workspace"}
    return [
        fn("list_files", "List the files under a folder of the workspace.", {"path": path}, []),
        fn(
            "read_file",
            "Read a text file of the workspace (or some of its lines).",
            {"path": path, "start_line": {"type": "integer"}, "end_line": {"type": "integer"}},
            ["path"],
        ),
        fn(
            "search",
            "Search the workspace's files for a regular expression; file:line: text per match.",
            {"pattern": {"type": "string"}, "path": path},
            ["pattern"],
        ),
        fn(
            "write_file",
            "Write a whole file of the workspace (created, or replaced).",
            {"path": path, "content": {"type": "string"}},
            ["path", "content"],
        ),
        fn(
            "apply_patch",
            "Apply a unified diff (as git diff prints it, paths a/... b/...) to the workspace.",
            {"patch": {"type": "string"}},
            ["patch"],
        ),
        fn(
            "run",
            "Run a command (argv list) in the workspace; its exit code and output tail.",
            {
                "command": {"type": "array", "items": {"type": "string"}},
                "timeout_s": {"type": "number"},
            },
            ["command"],
        ),
    ]


ASK_HUMAN = {
    "type": "function",
    "function": {
        "name": "ask_human",
        "description": "Ask a person a question and wait for the answer (it may take days).",
        "parameters": {
            "type": "object",
            "properties": {"question": {"type": "string"}},
            "required": ["question"],
        },
    },
}
