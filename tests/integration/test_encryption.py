"""Payload encryption, checked where it matters: in the server's database file.

A dev server of this module's own (its SQLite files are read byte by byte) runs a plan
whose tool prints a marker and whose other tool fails with one. With keys, neither
marker is anywhere in the server's files, nor in ``temporal workflow show``; through the
codec server (``towline codec-server``, called by the Temporal CLI and directly over
HTTP) both read again. Without keys the same run leaves the marker in the files: the
check can fail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from tests.helpers import plan, ws
from towline.plan.load import check_data
from towline.starter import api
from towline.worker import devserver
from towline.worker.client import connect, wait_until_serving
from towline.worker.devserver import free_port
from towline.worker.main import build_tool_workers, build_worker

pytestmark = pytest.mark.timeout(120)

TOWLINE = str(Path(sys.executable).parent / "towline")
TEMPORAL = str(devserver.find_binary("temporal"))
UI = "http://localhost:8233"


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A dev server whose database files this module reads: (address, folder)."""
    folder = tmp_path_factory.mktemp("encrypted-server")
    opts = devserver.DevServerOptions(
        port=free_port(), ui_port=None, db_filename=folder / "temporal.db"
    )
    proc = devserver.start(opts, log=folder.parent / "encrypted-server.log")
    try:
        yield f"{opts.ip}:{opts.port}", folder
    finally:
        devserver.stop(proc)


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys"
    path.write_text(f"# rotated monthly\n2026-06: {_key()}\n\n2026-01: {_key()}\n")
    monkeypatch.setenv("TOWLINE_ENCRYPTION_KEYS", str(path))
    return path


@contextlib.asynccontextmanager
async def _worker(client: Client) -> AsyncIterator[str]:
    queue = f"enc-{uuid.uuid4().hex[:8]}"
    async with contextlib.AsyncExitStack() as stack:
        for w in (build_worker(client, queue, sandboxed=True), *build_tool_workers(client, queue)):
            await stack.enter_async_context(w)
        yield queue


def _marked_plan(marker: str) -> dict[str, Any]:
    # The command carries the marker reversed: only the tool's output holds it as it is.
    say = {"command": ["sh", "-c", 'echo "$0" | rev', marker[::-1]]}
    fail = {"command": ["sh", "-c", 'echo "$0" | rev >&2; exit 3', f"fail-{marker}"[::-1]]}
    return plan(
        ws(
            "w",
            {"id": "say", "tool": "shell", "with": say},
            {
                "id": "fail",
                "tool": "shell",
                "with": fail,
                "retry": {"max_attempts": 1},
                "on_failure": "skip",
            },
        ),
        name="secret",
    )


async def _run(client: Client, marker: str, plan_dir: Path) -> str:
    async with _worker(client) as queue:
        rid = await api.start_run(
            client, check_data(_marked_plan(marker)), plan_dir=plan_dir, task_queue=queue
        )
        state = await api.wait_run(client, rid)
    assert state.status == "succeeded", state
    tasks = state.workstreams["w"].tasks
    assert tasks["say"].outputs["stdout"] == marker + "\n"  # read back through the codec
    assert tasks["fail"].status == "skipped"
    assert tasks["fail"].error is not None
    assert f"fail-{marker}" in (tasks["fail"].error.message + str(tasks["fail"].outputs))
    return rid


def _in_server_files(folder: Path, needle: str) -> list[str]:
    return [p.name for p in folder.iterdir() if needle.encode() in p.read_bytes()]


async def _show(address: str, workflow_id: str, *extra: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        TEMPORAL,
        *("workflow", "show", "--address", address, "-w", workflow_id, "-o", "json", *extra),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TEMPORAL_CONFIG_FILE": os.devnull},
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    # Payloads print as base64 in JSON: read them too.
    return out.decode() + "\n".join(_payload_texts(json.loads(out)))


def _payload_texts(value: object) -> list[str]:
    if isinstance(value, dict):
        found = []
        if isinstance(value.get("data"), str) and "metadata" in value:
            found.append(base64.b64decode(value["data"]).decode(errors="replace"))
        for v in value.values():
            found += _payload_texts(v)
        return found
    if isinstance(value, list):
        return [t for v in value for t in _payload_texts(v)]
    return []


@contextlib.asynccontextmanager
async def _codec_server(*args: str, log: Path) -> AsyncIterator[str]:
    port = free_port()
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            TOWLINE,
            *("codec-server", "--port", str(port), "--allow-origin", UI, *args),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            for _ in range(200):
                if devserver.port_open("127.0.0.1", port):
                    break
                assert proc.returncode is None, log.read_text()
                await asyncio.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 15)


async def test_nothing_a_tool_printed_or_failed_with_is_readable_without_the_keys(
    server: tuple[str, Path], keys: Path, tmp_path: Path
) -> None:
    address, folder = server
    marker = f"marker-{uuid.uuid4().hex}"
    client = await connect(address, "default")
    rid = await _run(client, marker, tmp_path)

    assert _in_server_files(folder, marker) == []
    assert _in_server_files(folder, f"fail-{marker}") == []
    for wid in (rid, f"{rid}/w"):
        assert marker not in await _show(address, wid)

    # The codec server gives them back: to the Temporal CLI, and over plain HTTP.
    token = tmp_path / "token"
    token.write_text("let-me-in\n")
    async with _codec_server("--token-file", str(token), log=tmp_path / "codec.log") as url:
        shown = await _show(
            address, f"{rid}/w", "--codec-endpoint", url, "--codec-auth", "Bearer let-me-in"
        )
        assert marker in shown
        assert f"fail-{marker}" in shown  # the failure's message, encoded with the payloads

        history = await client.get_workflow_handle(f"{rid}/w").fetch_history()
        completed = [
            e.activity_task_completed_event_attributes.result
            for e in history.events
            if e.HasField("activity_task_completed_event_attributes")
        ]
        body = {
            "payloads": [
                {
                    "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                    "data": base64.b64encode(p.data).decode(),
                }
                for result in completed
                for p in result.payloads
            ]
        }
        async with httpx.AsyncClient() as http:
            headers = {"Authorization": "Bearer let-me-in", "X-Namespace": "default"}
            refused = await http.post(f"{url}/decode", json=body)
            assert refused.status_code == 401
            decoded = await http.post(f"{url}/decode", json=body, headers=headers)
            assert decoded.status_code == 200, decoded.text
            texts = [base64.b64decode(p["data"]) for p in decoded.json()["payloads"]]
            assert any(marker.encode() in t for t in texts)
            # the Web UI's preflight, from its origin and from another
            asked = {
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
            }
            ui = await http.options(f"{url}/decode", headers={"Origin": UI, **asked})
            assert ui.headers["access-control-allow-origin"] == UI
            other = await http.options(
                f"{url}/decode", headers={"Origin": "http://evil.example", **asked}
            )
            assert "access-control-allow-origin" not in other.headers
            # and /encode makes what /decode reads
            plain = {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "IjEi"}]}
            sealed = (await http.post(f"{url}/encode", json=plain, headers=headers)).json()
            assert sealed != plain
            again = (await http.post(f"{url}/decode", json=sealed, headers=headers)).json()
            assert again == plain


async def test_without_keys_the_marker_is_in_the_file_so_the_check_can_fail(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOWLINE_ENCRYPTION_KEYS", raising=False)
    address, folder = server
    marker = f"marker-{uuid.uuid4().hex}"
    client = await wait_until_serving(address, "default")
    rid = await _run(client, marker, tmp_path)
    assert _in_server_files(folder, marker)
    assert marker in await _show(address, f"{rid}/w")


async def test_rotated_keys_still_read_old_runs_and_a_missing_key_is_named(
    server: tuple[str, Path], keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address, _ = server
    marker = f"marker-{uuid.uuid4().hex}"
    rid = await _run(await connect(address, "default"), marker, tmp_path)
    old = keys.read_text()

    rotated = tmp_path / "rotated"
    rotated.write_text(f"2026-12: {_key()}\n{old}")
    monkeypatch.setenv("TOWLINE_ENCRYPTION_KEYS", str(rotated))
    state = await api.get_status(await connect(address, "default"), rid)
    assert state.workstreams["w"].tasks["say"].outputs["stdout"] == marker + "\n"

    only_new = tmp_path / "only-new"
    only_new.write_text(rotated.read_text().splitlines()[0] + "\n")
    env = {
        **os.environ,
        "TOWLINE_ENCRYPTION_KEYS": str(only_new),
        "TEMPORAL_CONFIG_FILE": os.devnull,
    }
    proc = await asyncio.create_subprocess_exec(
        TOWLINE,
        *("status", rid, "--address", address, "--json"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 2, (out, err)
    assert "key '2026-06'" in err.decode()
    assert "Traceback" not in err.decode()
    assert json.loads(out or b"null") is None
