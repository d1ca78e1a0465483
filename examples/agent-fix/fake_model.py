"""A stand-in for a chat model, for trying examples/agent-fix without a key or a network.

    python examples/agent-fix/fake_model.py [--port 8765]

It speaks the OpenAI chat-completions protocol with tool calls on 127.0.0.1, as a real
server does, and plays a careful engineer fixing one kind of bug (a function that
subtracts where its test expects a sum): it reads the files the failure names, writes
the fix, runs the tests, and answers with a summary. It is not a model: it only knows
this example. Token counts are words, so budgets and `towline stats` have figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ],
    }


def reply(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The next turn, from the conversation so far."""
    turn = sum(m["role"] == "assistant" for m in messages)
    failure = messages[1]["content"]
    files = sorted(set(re.findall(r'File "(?:.*/)?([\w.-]+\.py)"', failure))) or ["calc.py"]
    # The module under test: one the failure names, else the test file's own subject.
    source = next((f for f in files if not f.startswith("test")), files[0].removeprefix("test_"))
    last = messages[-1].get("content") or ""
    if turn == 0:
        return _call("read_file", path=source)
    if turn == 1:
        fixed = last.replace("return a - b", "return a + b")
        if fixed == last:
            return {"role": "assistant", "content": f"I could not find the bug in {source}."}
        return _call("write_file", path=source, content=fixed)
    if turn == 2:
        return _call("run", command=["python3", "-m", "unittest", "-v"])
    verdict = "the tests pass" if "OK" in last else "the tests still fail"
    return {
        "role": "assistant",
        "content": f"add() in {source} subtracted instead of adding; I made it add, and {verdict}.",
    }


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        message = reply(body["messages"])
        words = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
        out = len(json.dumps(message).split())
        data = json.dumps(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": words,
                    "completion_tokens": out,
                    "total_tokens": words + out,
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    port = parser.parse_args().port
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"fake model on http://127.0.0.1:{port}/v1", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
