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
"""

from __future__ import annotations

import json
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
