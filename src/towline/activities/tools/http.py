"""``http``: one HTTP request, its reply checked against the statuses the plan expects.

The reply is streamed: at most ``max_text`` bytes of the body are kept in memory and in
the task's outputs (parsed too, when the reply is JSON); a larger body goes whole to an
artifact as it arrives, so a large download costs disk, not the worker's memory.

How failures are categorised, so Temporal retries only what a retry can fix:

- the server cannot be reached (refused, DNS, TLS, dropped connection): ``tool``;
- no reply within ``timeout``: ``timeout``;
- an unexpected 5xx, 408 or 429: ``tool``, the server's trouble, likely to pass;
- an unexpected 409: ``conflict``;
- any other unexpected status (a 4xx, or a 2xx/3xx the plan did not list): ``validation``.
  The request itself is wrong (a bad token, path or payload) and sending it again gets the
  same answer; a plan that expects a transient 4xx lists it in ``expect`` and checks it.

:func:`transport_error`, :func:`status_category` and :func:`snippet` are shared with the
``llm`` tool.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from typing import IO, Any, Literal

import httpx
from pydantic import Field, field_validator, model_validator
from temporalio import activity

from towline.activities.artifacts import artifact_path, artifact_ref, publish_artifact
from towline.activities.base import ToolInput, tool
from towline.durations import format_duration
from towline.errors import Category, ToolError
from towline.plan.spec import Duration
from towline.toolcall import ToolContext

DEFAULT_MAX_TEXT = 64 * 1024
MAX_MAX_TEXT = 1024 * 1024
MAX_REDIRECTS = 10

_SNIPPET = 300  # characters of a reply's body quoted in a failure's message
_OUTPUT_TAIL = 4 * 1024  # characters of a reply's body kept with a failure
_CHUNK = 64 * 1024

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def http_url(url: str, *, example: str = "https://api.example.com/items") -> str:
    """``url`` if it is an absolute http(s) URL with a host; else a clear ValueError."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as e:
        raise ValueError(f"not a valid URL: {e}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"must be an http:// or https:// URL with a host, e.g. {example}")
    return url


class HttpInput(ToolInput):
    """One HTTP request. ``json`` and ``body`` are the two ways to send a body: pick one."""

    method: Method = Field("GET", description="GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS")
    url: str = Field(description="an http:// or https:// URL, query string included")
    headers: dict[str, str] = Field(
        default_factory=dict, description="request headers, e.g. {Authorization: ...}"
    )
    json_: Any = Field(
        None, alias="json", description="a value sent as the JSON body (sets Content-Type)"
    )
    body: str | None = Field(None, description="a text body, sent as is (UTF-8)")
    expect: list[int] | None = Field(
        None,
        min_length=1,
        description="the statuses that count as success, e.g. [200, 201]; default: any 2xx",
    )
    timeout: Duration = Field(
        timedelta(seconds=30), description="how long to wait for the server, e.g. 30s"
    )
    follow_redirects: bool = Field(True, description=f"follow up to {MAX_REDIRECTS} redirects")
    max_text: int = Field(
        DEFAULT_MAX_TEXT,
        ge=0,
        le=MAX_MAX_TEXT,
        description="bytes of the reply's body kept in outputs.text (and parsed as JSON); "
        "a longer body is stored whole as an artifact (outputs.body)",
    )

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, method: Any) -> Any:
        return method.upper() if isinstance(method, str) else method

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return http_url(url)

    @field_validator("expect")
    @classmethod
    def _statuses(cls, expect: list[int] | None) -> list[int] | None:
        for status in expect or []:
            if not 100 <= status <= 599:
                raise ValueError(f"{status} is not an HTTP status (100-599)")
        return expect

    @model_validator(mode="after")
    def _one_body(self) -> HttpInput:
        if "json_" in self.model_fields_set and self.body is not None:
            raise ValueError("give 'json' or 'body', not both")
        return self


@tool("http", HttpInput, "Send an HTTP request; check its status; parse a JSON reply.")
async def http(args: HttpInput, ctx: ToolContext) -> dict[str, Any]:
    """Outputs: ``status``, ``reason``, ``headers`` (lower-case names), ``json`` (the parsed
    reply when it is JSON and within ``max_text``, else null), ``text`` (the body, at most
    ``max_text`` bytes), ``text_truncated``, ``body`` (the artifact holding the whole body
    when it is longer, else null), ``bytes``, ``url`` (after redirects) and ``elapsed_s``.
    """
    info = activity.info()
    body_ref = artifact_ref(ctx, f"http-{info.activity_id}-{info.attempt}.body")
    started = time.monotonic()
    timeout = args.timeout.total_seconds()
    send: dict[str, Any] = {"headers": args.headers}
    if "json_" in args.model_fields_set:
        send["json"] = args.json_
    elif args.body is not None:
        send["content"] = args.body.encode()
    async with httpx.AsyncClient(
        timeout=timeout, follow_redirects=args.follow_redirects, max_redirects=MAX_REDIRECTS
    ) as client:
        try:
            async with client.stream(args.method, args.url, **send) as reply:
                kept, size, stored = await _read_body(reply, args.max_text, body_ref)
        except httpx.TimeoutException:
            raise ToolError(
                "timeout",
                f"{args.method} {args.url}: no reply within {format_duration(args.timeout)}",
                hint="raise with.timeout, or find out why the server is slow",
            ) from None
        except httpx.TooManyRedirects:
            raise ToolError(
                "tool", f"{args.method} {args.url}: more than {MAX_REDIRECTS} redirects"
            ) from None
        except httpx.HTTPError as e:
            raise transport_error(args.method, args.url, e) from None
    text = kept.decode(reply.encoding or "utf-8", errors="replace")
    outputs = {
        "status": reply.status_code,
        "reason": reply.reason_phrase,
        "headers": dict(reply.headers.items()),
        "json": _parsed(reply, kept) if not stored else None,
        "text": text,
        "text_truncated": stored,
        "body": body_ref if stored else None,
        "bytes": size,
        "url": str(reply.url),
        "elapsed_s": round(time.monotonic() - started, 3),
    }
    expected = args.expect or range(200, 300)
    if reply.status_code not in expected:
        wanted = ", ".join(map(str, args.expect)) if args.expect else "2xx"
        raise ToolError(
            status_category(reply.status_code),
            f"{args.method} {args.url}: HTTP {reply.status_code} {reply.reason_phrase} "
            f"(expected {wanted}){snippet(text)}",
            output=text[-_OUTPUT_TAIL:],
            outputs=outputs,
        )
    return outputs


def status_category(status: int) -> Category:
    """The category of a reply whose status was not expected (see the module's docstring)."""
    if status >= 500 or status in (408, 429):
        return "tool"
    if status == 409:
        return "conflict"
    return "validation"


def transport_error(method: str, url: str, err: httpx.HTTPError) -> ToolError:
    """A request that got no HTTP reply: a retry may reach the server, so ``tool``."""
    if isinstance(err, httpx.TimeoutException):
        return ToolError("timeout", f"{method} {url}: no reply in time ({error_reason(err)})")
    if isinstance(err, httpx.ConnectError):
        return ToolError(
            "tool",
            f"cannot reach {url}: {error_reason(err)}",
            hint="check the URL and that the server is up; the task's retry policy applies",
        )
    return ToolError("tool", f"{method} {url}: {type(err).__name__}: {error_reason(err)}")


def error_reason(err: BaseException) -> str:
    """What went wrong, in words: the operating system's, when it had a say.

    httpx wraps the socket's error a few times, and asyncio's "all connection attempts
    failed" hides the "connection refused" below it; the innermost error with an errno
    says it best.
    """
    found: OSError | None = None
    seen: set[int] = set()
    here: BaseException | None = err
    while here is not None and id(here) not in seen:
        seen.add(id(here))
        if isinstance(here, OSError) and here.errno is not None:
            found = here
        here = here.__cause__ or here.__context__
    if found is not None and isinstance(found.errno, int):
        if found.errno > 0:
            return os.strerror(found.errno)
        if found.strerror:
            return found.strerror  # resolver errors (negative errno): "Name or service not known"
    return str(err) or type(err).__name__


async def _read_body(reply: httpx.Response, keep: int, ref: str) -> tuple[bytes, int, bool]:
    """The first ``keep`` bytes of the body, its size, and whether it went to ``ref``.

    Once the body outgrows ``keep``, all of it (the kept part first) streams to the
    artifact; only the kept part stays in memory.
    """
    kept = bytearray()
    size = 0
    sink: IO[bytes] | None = None
    try:
        async for chunk in reply.aiter_bytes(_CHUNK):
            size += len(chunk)
            if sink is None and size <= keep:
                kept += chunk
                continue
            if sink is None:
                path = artifact_path(ref)
                path.parent.mkdir(parents=True, exist_ok=True)
                sink = path.open("wb")
                sink.write(kept)
            sink.write(chunk)
            if len(kept) < keep:
                kept += chunk[: keep - len(kept)]
    finally:
        if sink is not None:
            sink.close()
            publish_artifact(ref)
    return bytes(kept), size, sink is not None


def _parsed(reply: httpx.Response, body: bytes) -> Any:
    """The JSON in ``body`` when the reply says it is JSON and it parses; else None."""
    kind = reply.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (kind == "application/json" or kind.endswith("+json")) or not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def snippet(text: str) -> str:
    """The start of ``text`` on one line, as ``: ...``, to end a failure's message."""
    flat = " ".join(text.split())
    if not flat:
        return ""
    return f": {flat[:_SNIPPET]}{'...' if len(flat) > _SNIPPET else ''}"
