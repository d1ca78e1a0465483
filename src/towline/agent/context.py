"""The conversation's size, and compaction before it would pass ``context_tokens``.

Counting: the server counts what it was sent (``usage.prompt_tokens``, with the model's
own tokenizer) and what it answered (``completion_tokens``); towline keeps that figure
for the conversation as last sent, and estimates only what was added since. The
estimate is the documented rule of thumb for English text and code with BPE tokenizers
(OpenAI's among them): **one token per 4 characters** (rounded up), plus
:data:`PER_MESSAGE` tokens per message for its role and framing. A message held in the
store by reference is estimated from its size in bytes. No tokenizer is loaded: the
tokenizers on PyPI (tiktoken) download their tables on first use, which a worker
offline cannot do, and the server's count is exact where it matters most.

Compaction keeps the head (the system message and the instructions, with the failure
they quote) and the latest :data:`KEEP_RECENT` assistant turns whole, and replaces the
oldest tool results (and the arguments of the calls that made them, such as a file
written whole) with a marker, until the estimate fits below ``context_tokens`` less
room for the reply. The calls themselves stay, so the model still sees what it did.
"""

from __future__ import annotations

import json
from typing import Any

from towline.stored import stored_ref

CHARS_PER_TOKEN = 4
PER_MESSAGE = 4  # tokens of role and framing per message
KEEP_HEAD = 2  # the system message and the instructions
KEEP_RECENT = 2  # assistant turns kept whole, with their tool results
REPLY_ROOM = 1024  # tokens kept free for the reply unless max_output_tokens says
COMPACTED = "[compacted"


def estimate_tokens(text: str) -> int:
    """Tokens in ``text`` by the rule of thumb (1 per 4 characters, rounded up)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def _value_tokens(value: Any) -> int:
    if value is None:
        return 0
    if stored_ref(value) is not None:
        return -(-int(value.get("bytes", 0)) // CHARS_PER_TOKEN)
    if isinstance(value, str):
        return estimate_tokens(value)
    return estimate_tokens(json.dumps(value, default=str))


def message_tokens(message: dict[str, Any]) -> int:
    """The estimated tokens of one chat message (its content and its tool calls)."""
    tokens = PER_MESSAGE + _value_tokens(message.get("content"))
    for call in message.get("tool_calls") or ():
        fn = call.get("function", {})
        tokens += PER_MESSAGE + estimate_tokens(str(fn.get("name", "")))
        tokens += _value_tokens(fn.get("arguments"))
    return tokens


def conversation_tokens(
    messages: list[dict[str, Any]], measured: tuple[int, int] | None = None
) -> int:
    """The conversation's size: the server's count of the first ``measured[0]`` messages
    (``measured[1]`` tokens) plus the estimate of the rest."""
    if measured is not None and measured[0] <= len(messages):
        count, tokens = measured
        return tokens + sum(message_tokens(m) for m in messages[count:])
    return sum(message_tokens(m) for m in messages)


def _marker(what: str, tokens: int) -> str:
    return (
        f"{COMPACTED}: {what}, about {tokens} tokens, was removed to keep the conversation "
        "within its context window; call the tool again if you need it]"
    )


def compact(
    messages: list[dict[str, Any]],
    *,
    limit: int,
    measured: tuple[int, int] | None = None,
    reply_room: int = REPLY_ROOM,
) -> tuple[list[dict[str, Any]], int]:
    """``messages`` made to fit ``limit`` tokens less ``reply_room``, and how many tool
    results were compacted (0: it fitted; the list is then returned as it was).

    Never touched: the first :data:`KEEP_HEAD` messages and everything from the
    :data:`KEEP_RECENT`-th last assistant message on. Oldest first, each compactable
    tool result (and the arguments of the call that made it) becomes a marker, until the
    estimate fits. If everything compactable is compacted and it still does not fit, the
    result is as small as it can be made.
    """
    budget = max(limit - reply_room, 0)
    size = conversation_tokens(messages, measured)
    if size <= budget:
        return messages, 0
    assistants = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    recent = assistants[-KEEP_RECENT] if len(assistants) >= KEEP_RECENT else len(messages)
    out = [dict(m) for m in messages]
    size = conversation_tokens(out)  # the server's count no longer applies once changed
    names = _call_names(out)
    done = 0
    for i in range(KEEP_HEAD, recent):
        if size <= budget:
            break
        m = out[i]
        if m.get("role") == "tool" and not _is_marker(m.get("content")):
            before = message_tokens(m)
            name = names.get(str(m.get("tool_call_id")), "a tool")
            m["content"] = _marker(f"the result of {name}", _value_tokens(m.get("content")))
            size += message_tokens(m) - before
            done += 1
        elif m.get("role") == "assistant" and m.get("tool_calls"):
            before = message_tokens(m)
            m["tool_calls"] = [_compact_call(c) for c in m["tool_calls"]]
            size += message_tokens(m) - before
    return out, done


def _is_marker(content: Any) -> bool:
    return isinstance(content, str) and content.startswith(COMPACTED)


def _call_names(messages: list[dict[str, Any]]) -> dict[str, str]:
    names: dict[str, str] = {}
    for m in messages:
        for call in m.get("tool_calls") or ():
            names[str(call.get("id"))] = str(call.get("function", {}).get("name", "a tool"))
    return names


_SMALL_ARGUMENTS = 200  # characters of a call's arguments always kept


def _compact_call(call: dict[str, Any]) -> dict[str, Any]:
    fn = dict(call.get("function", {}))
    args = fn.get("arguments")
    if stored_ref(args) is None and (not isinstance(args, str) or len(args) <= _SMALL_ARGUMENTS):
        return call
    fn["arguments"] = json.dumps({"compacted": "the arguments were removed to save room"})
    return {**call, "function": fn}
