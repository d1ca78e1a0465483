"""A chat-completions server (the OpenAI protocol) for the ``llm`` tool's tests.

It answers ``POST /v1/chat/completions`` as an OpenAI-compatible server does. The
request's ``model`` chooses how, so one server covers every case:

- any model not listed below: ``echo: <last user message>``, with token counts (one
  token per word) computed from the request;
- ``json-model``: a JSON object made from the request (the model and its temperature);
- ``fenced-json``: the same, wrapped in a ```json fence as chat models often do;
- ``chatty``: prose, where JSON was asked for;
- ``error-<status>``: that HTTP status with an OpenAI-style error body;
- ``html``: HTTP 200 with an HTML page (a proxy's, say) instead of JSON;
- ``no-choices``: HTTP 200 with JSON that is not a completion;
- ``slow``: no answer until the test ends.

With ``api_key`` set, a request without ``Authorization: Bearer <api_key>`` gets 401.

:func:`agent_server` is the same protocol with tool calls, each model following a script
of turns (the ``agent`` tool's tests).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tests.fakes.servers import LocalServer, Reply, Request


def chat_server(api_key: str | None = None) -> LocalServer:
    """A chat-completions server; its base URL for the tool is ``server.url + "/v1"``."""
    holder: dict[str, LocalServer] = {}

    def handle(request: Request) -> Reply:
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return _error(404, f"no route {request.method} {request.path}")
        if api_key is not None and request.headers.get("authorization") != f"Bearer {api_key}":
            return _error(401, "Incorrect API key provided")
        body = request.json()
        model = body["model"]
        if model == "slow":
            holder["server"].wait_slowly()
            return _error(503, "released at the end of the test")
        if model.startswith("error-"):
            status = int(model.removeprefix("error-"))
            return _error(status, f"the fake server was asked for HTTP {status}")
        if model == "html":
            return Reply(
                200, "<html><body>502 Bad Gateway</body></html>", {"Content-Type": "text/html"}
            )
        if model == "no-choices":
            return Reply.of_json({"object": "chat.completion", "choices": []})
        return Reply.of_json(_completion(model, body))

    server = LocalServer(handle)
    holder["server"] = server
    return server


def _completion(model: str, body: dict[str, Any]) -> dict[str, Any]:
    messages = body["messages"]
    last_user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    answer = {"model": model, "temperature": body.get("temperature")}
    if model == "json-model":
        content = json.dumps(answer)
    elif model == "fenced-json":
        content = f"```json\n{json.dumps(answer)}\n```"
    elif model == "chatty":
        content = "Sure! Here is what you asked for, in prose."
    else:
        content = f"echo: {last_user}"
    prompt_tokens = sum(len(m["content"].split()) for m in messages)
    completion_tokens = len(content.split())
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "length" if body.get("max_tokens") == 1 else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _error(status: int, message: str) -> Reply:
    return Reply.of_json({"error": {"message": message, "type": "test_error"}}, status)


# ---------------------------------------------------------------- agents: scripted tool calls

Step = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


def call(name: str, **arguments: Any) -> dict[str, Any]:
    """An assistant turn that calls one tool."""
    return calls((name, arguments))


def calls(*pairs: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """An assistant turn that calls several tools, in order."""
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            for i, (name, arguments) in enumerate(pairs)
        ],
    }


def answer(text: str) -> dict[str, Any]:
    """An assistant turn that answers without calling a tool: the end."""
    return {"role": "assistant", "content": text}


def agent_server(
    scripts: Mapping[str, Sequence[Step]], *, api_key: str | None = None, tokens_per_word: int = 1
) -> LocalServer:
    """A chat-completions server whose models follow a script of turns.

    ``scripts`` maps a model's name to its turns; a request gets the turn whose index is
    the number of assistant messages already in its conversation, so the same request
    always gets the same answer, and each agent conversation starts at the first turn. A
    turn is an assistant message (:func:`call`, :func:`calls`, :func:`answer`) or a
    function of the request's body returning one. Token counts are words of the
    messages sent (times ``tokens_per_word``) and of the reply. Tool call ids are made
    unique per turn. Every request is kept (``server.requests``).
    """

    def handle(request: Request) -> Reply:
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return _error(404, f"no route {request.method} {request.path}")
        if api_key is not None and request.headers.get("authorization") != f"Bearer {api_key}":
            return _error(401, "Incorrect API key provided")
        body = request.json()
        script = scripts.get(body["model"])
        if script is None:
            return _error(404, f"the model {body['model']} does not exist")
        turn = sum(m["role"] == "assistant" for m in body["messages"])
        if turn >= len(script):
            return _error(500, f"the script of {body['model']} has no turn {turn}")
        step = script[turn]
        message = step(body) if callable(step) else step
        message = json.loads(json.dumps(message))
        for i, c in enumerate(message.get("tool_calls") or ()):
            c["id"] = f"call_{turn}_{i}"
        prompt = sum(len(_text(m).split()) for m in body["messages"]) * tokens_per_word
        completion = len(_text(message).split()) * tokens_per_word
        return Reply.of_json(
            {
                "id": f"chatcmpl-{turn}",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
        )

    return LocalServer(handle)


def _text(message: dict[str, Any]) -> str:
    parts = [message.get("content") or ""]
    for c in message.get("tool_calls") or ():
        parts.append(c["function"]["name"])
        parts.append(c["function"]["arguments"])
    return " ".join(parts)


def conversation(request: Request) -> list[dict[str, Any]]:
    """The messages a request sent."""
    return list(request.json()["messages"])
