"""``llm``: one chat completion from any OpenAI-compatible endpoint.

It speaks the protocol itself (``POST {base_url}/chat/completions`` with httpx): the
request and reply are a few fields of JSON, and every compatible server (OpenAI, Azure's
and vLLM's, Ollama, LiteLLM, a test's fake) agrees on them, where an SDK would bring its
own retries (Temporal's retry policy is the one that applies), timeouts and errors.

The API key is normally ``${{ secrets.OPENAI_API_KEY }}``: resolved in the worker, sent
as ``Authorization: Bearer ...``, and never in history or outputs.

Cost is ``prompt_tokens / 1000 * prompt_per_1k + completion_tokens / 1000 *
completion_per_1k``. The price comes from, in order: the task's ``with.price``; the
worker's price file (``TOWLINE_LLM_PRICES``, JSON or YAML mapping model names to
``{prompt_per_1k, completion_per_1k}``), read on each call; the defaults in
:data:`PRICES`. A model matches the longest name it starts with, so
``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``. A model with no price costs 0 and
says so in ``outputs.price_source``.

Failures: the key refused (401, 403) and a request the server rejects (400, 404, ...) are
``validation``; rate limits (429) and server errors (5xx) are ``tool`` and retried, as are
an unreachable server and a reply that is not the protocol's JSON; the task's own timeout
is ``timeout``.
"""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from towline.activities.base import ToolInput, spend, tool
from towline.activities.tools.http import http_url, snippet, status_category, transport_error
from towline.durations import format_duration
from towline.errors import ToolError
from towline.plan.spec import Duration
from towline.state import Usage
from towline.toolcall import ToolContext, ToolResult

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PRICES_ENV = "TOWLINE_LLM_PRICES"

_FENCED = re.compile(r"^```(?:json)?\s*\n(.*)\n```\s*$", re.DOTALL)


class Price(BaseModel):
    """US dollars per 1000 tokens."""

    prompt_per_1k: float = Field(ge=0)
    completion_per_1k: float = Field(ge=0)


# Published list prices (USD per 1000 tokens) of a few common models; a plan or the
# worker's price file overrides them, and prices change: check them before relying on
# cost budgets.
PRICES: dict[str, Price] = {
    "gpt-4o": Price(prompt_per_1k=0.0025, completion_per_1k=0.01),
    "gpt-4o-mini": Price(prompt_per_1k=0.00015, completion_per_1k=0.0006),
    "gpt-4.1": Price(prompt_per_1k=0.002, completion_per_1k=0.008),
    "gpt-4.1-mini": Price(prompt_per_1k=0.0004, completion_per_1k=0.0016),
    "gpt-4.1-nano": Price(prompt_per_1k=0.0001, completion_per_1k=0.0004),
    "o3-mini": Price(prompt_per_1k=0.0011, completion_per_1k=0.0044),
    "claude-sonnet-4": Price(prompt_per_1k=0.003, completion_per_1k=0.015),
    "claude-3-5-haiku": Price(prompt_per_1k=0.0008, completion_per_1k=0.004),
}


class Message(ToolInput):
    role: Literal["system", "developer", "user", "assistant"]
    content: str


class PriceInput(ToolInput, Price):
    """A price given in a plan: strict keys."""


class LlmInput(ToolInput):
    """A chat completion: ``prompt`` (and optionally ``system``) or a list of ``messages``."""

    base_url: str = Field(
        DEFAULT_BASE_URL, description="the API's base URL; the tool POSTs to /chat/completions"
    )
    model: str = Field(min_length=1, description="the model's name, e.g. gpt-4o-mini")
    prompt: str | None = Field(None, description="the user's message (or give messages)")
    system: str | None = Field(None, description="a system message sent before prompt")
    messages: list[Message] | None = Field(
        None, min_length=1, description="the whole conversation: [{role, content}, ...]"
    )
    temperature: float | None = Field(
        None, ge=0, le=2, description="sampling temperature, 0 to 2 (default: the server's)"
    )
    max_tokens: int | None = Field(None, ge=1, description="at most this many tokens back")
    api_key: str | None = Field(
        None, description="sent as a Bearer token; normally ${{ secrets.OPENAI_API_KEY }}"
    )
    json_: bool = Field(
        False,
        alias="json",
        description="ask for a JSON object and parse it into outputs.json "
        "(a reply that is not JSON fails the task)",
    )
    price: PriceInput | None = Field(
        None, description="{prompt_per_1k, completion_per_1k} in USD, overriding the table"
    )
    timeout: Duration = Field(
        timedelta(minutes=10), description="how long to wait for the reply, e.g. 2m"
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return http_url(url, example="https://api.openai.com/v1")

    @model_validator(mode="after")
    def _one_conversation(self) -> LlmInput:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give 'prompt' or 'messages' (exactly one)")
        if self.system is not None and self.messages is not None:
            raise ValueError("'system' goes with 'prompt'; put it first in 'messages' instead")
        return self

    def conversation(self) -> list[dict[str, str]]:
        if self.messages is not None:
            return [m.model_dump() for m in self.messages]
        first = [{"role": "system", "content": self.system}] if self.system is not None else []
        return [*first, {"role": "user", "content": self.prompt or ""}]


@tool("llm", LlmInput, "Ask an OpenAI-compatible chat model; outputs its text, tokens and cost.")
async def llm(args: LlmInput, ctx: ToolContext) -> ToolResult:
    """Outputs: ``text``, ``finish_reason``, ``model`` (as the server names it),
    ``usage`` ({prompt_tokens, completion_tokens, total_tokens}), ``cost_usd``,
    ``price_source`` (with, file, default or unknown) and, with ``json: true``, ``json``.
    The task's usage (tokens and cost) counts towards the run's budget.
    """
    url = args.base_url.rstrip("/") + "/chat/completions"
    request: dict[str, Any] = {"model": args.model, "messages": args.conversation()}
    if args.temperature is not None:
        request["temperature"] = args.temperature
    if args.max_tokens is not None:
        request["max_tokens"] = args.max_tokens
    if args.json_:
        request["response_format"] = {"type": "json_object"}
    headers = {"Accept": "application/json"}
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    async with httpx.AsyncClient(timeout=args.timeout.total_seconds()) as client:
        try:
            reply = await client.post(url, json=request, headers=headers)
        except httpx.TimeoutException:
            raise ToolError(
                "timeout",
                f"POST {url}: no reply within {format_duration(args.timeout)}",
                hint="raise with.timeout (and the task's timeout), or ask for less",
            ) from None
        except httpx.HTTPError as e:
            raise transport_error("POST", url, e) from None
    body = json_body(reply, url)
    if reply.status_code != 200:
        raise refused(reply, body, url)
    text, finish_reason, usage = _completion(body, url)
    price, source = _price(args)
    cost = (
        usage["prompt_tokens"] / 1000 * price.prompt_per_1k
        + usage["completion_tokens"] / 1000 * price.completion_per_1k
    )
    outputs: dict[str, Any] = {
        "text": text,
        "finish_reason": finish_reason,
        "model": body.get("model") or args.model,
        "usage": usage,
        "cost_usd": round(cost, 8),
        "price_source": source,
    }
    # Paid for now, whether or not the reply turns out usable.
    spend(Usage(tokens=usage["total_tokens"], cost_usd=outputs["cost_usd"]))
    if args.json_:
        outputs["json"] = _reply_json(text, url, outputs)
    return ToolResult(outputs=outputs)


def json_body(reply: httpx.Response, url: str) -> dict[str, Any]:
    """The reply's JSON object; anything else is not the protocol (``tool``, retried)."""
    try:
        body = reply.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    kind = reply.headers.get("content-type", "no content-type")
    what = "is not a JSON object" if body is not None else "is not JSON"
    raise ToolError(
        "tool",
        f"the reply from {url} {what} (HTTP {reply.status_code}, {kind}){snippet(reply.text)}",
        hint="check with.base_url: it should be an OpenAI-compatible API (e.g. .../v1)",
        output=reply.text[-4096:],
    )


def refused(reply: httpx.Response, body: dict[str, Any], url: str) -> ToolError:
    error = body.get("error")
    detail = error.get("message") if isinstance(error, dict) else error
    why = f": {detail}" if detail else ""
    status = reply.status_code
    if status in (401, 403):
        return ToolError(
            "validation",
            f"POST {url}: HTTP {status}, the API key was refused{why}",
            hint="check with.api_key and the secret it names",
        )
    return ToolError(status_category(status), f"POST {url}: HTTP {status}{why}")


def _completion(body: dict[str, Any], url: str) -> tuple[str, str | None, dict[str, int]]:
    try:
        choice = body["choices"][0]
        message = choice["message"]
        text = message.get("content") or ""
        if not isinstance(text, str):
            raise TypeError("content is not a string")
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise ToolError(
            "tool",
            f"the reply from {url} is not a chat completion (no choices[0].message.content: "
            f"{type(e).__name__} {e})",
            output=json.dumps(body)[-4096:],
        ) from None
    raw = body.get("usage")
    if not isinstance(raw, dict):
        raw = {}
    prompt = _count(raw.get("prompt_tokens"))
    completion = _count(raw.get("completion_tokens"))
    total = _count(raw.get("total_tokens")) or prompt + completion
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    return text, choice.get("finish_reason"), usage


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _reply_json(text: str, url: str, outputs: dict[str, Any]) -> Any:
    """The model's reply as JSON; models sometimes wrap it in a ```json fence."""
    fenced = _FENCED.match(text.strip())
    try:
        return json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        raise ToolError(
            "tool",
            f"json: true, but the model's reply is not JSON{snippet(text)}",
            hint="say in the prompt that the answer must be JSON; the task's retries apply",
            output=text[-4096:],
            outputs=outputs,
        ) from None


def _price(args: LlmInput) -> tuple[Price, str]:
    return price_of(args.model, args.price)


def price_of(model: str, given: Price | None) -> tuple[Price, str]:
    """The price of ``model`` and where it came from: ``given`` (a plan's), the worker's
    price file, the defaults, or unknown (free)."""
    if given is not None:
        return given, "with"
    for source, table in (("file", _price_file()), ("default", PRICES)):
        name = _longest_prefix(model, table)
        if name is not None:
            return table[name], source
    return Price(prompt_per_1k=0, completion_per_1k=0), "unknown"


def _longest_prefix(model: str, table: dict[str, Price]) -> str | None:
    names = [n for n in table if model == n or model.startswith(n + "-")]
    return max(names, key=len) if names else None


def _price_file() -> dict[str, Price]:
    path = os.environ.get(PRICES_ENV)
    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError("expected a mapping of model names to prices")
        return {str(name): Price.model_validate(price) for name, price in data.items()}
    except (OSError, ValueError, ValidationError, yaml.YAMLError) as e:
        raise ToolError(
            "system",
            f"cannot use the price file {path} ({PRICES_ENV}): {e}",
            hint="fix the file: {model: {prompt_per_1k: ..., completion_per_1k: ...}}",
        ) from None
