"""``towline dashboard`` in a real headless Chromium: the graph's statuses for a finished
and a waiting run, and answering from the page (refused without the token, recorded
with who gave it with it).

The dashboard is the real command, a process of its own against the session's dev
server; the runs' worker is the test's own. The browser is Debian's Chromium, driven
over WebDriver; its calls block, so they run in a thread while the worker goes on.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from tests import browser
from tests.e2e.test_cli import towline
from tests.helpers import echo, plan, sh, ws
from towline.plan.load import check_data
from towline.starter import api
from towline.worker.devserver import free_port, port_open

pytestmark = pytest.mark.timeout(240)

TOWLINE = str(Path(sys.executable).parent / "towline")
TOKEN = "test-token-0123456789abcdef"
UI = "http://temporal-ui.test:8233"  # where the dashboard's links lead (TOWLINE_UI_URL)
_NODES = (
    "return [...document.querySelectorAll('#graph-svg g.node')]"
    ".map(n => [n.dataset.task, n.dataset.status])"
)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    found = browser.find_or_install()
    if isinstance(found, str):
        pytest.skip(found)
    with browser.chrome(*found) as driver:
        yield driver


@pytest.fixture
def dashboard(dev_server: str, tmp_path: Path) -> Iterator[str]:
    """``towline dashboard`` on a free port of 127.0.0.1, with a known token."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    port = free_port()
    log = (tmp_path / "dashboard.log").open("wb")
    proc = subprocess.Popen(
        [
            *(TOWLINE, "dashboard", "--address", dev_server, "--port", str(port)),
            *("--token-file", str(token_file)),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TOWLINE_UI_URL": UI},
    )
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None, (tmp_path / "dashboard.log").read_text()
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    assert (
        f"dashboard: http://localhost:{port}/#token={TOKEN}"
        in (tmp_path / "dashboard.log").read_text()
    )


def _until(driver: Any, check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    """Poll the page until ``check()`` is truthy (the page refreshes itself)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}; page: {driver.find_element('tag name', 'main').text}")
        time.sleep(0.2)


def _graph(driver: Any, url: str, want: dict[str, str]) -> dict[str, str]:
    """Open a run's page; the statuses its graph shows, once they are ``want``."""
    driver.get(url)

    def nodes() -> dict[str, str] | None:
        shown = {task: status for task, status in driver.execute_script(_NODES)}
        return shown if shown == want else None

    shown: dict[str, str] = _until(driver, nodes, f"the graph never showed {want}")
    return shown


async def _start(client: Client, task_queue: str, tmp_path: Path, spec: dict[str, Any]) -> str:
    return await api.start_run(client, check_data(spec), plan_dir=tmp_path, task_queue=task_queue)


async def _statuses(client: Client, run_id: str) -> dict[str, str]:
    state = await api.get_status(client, run_id)
    return {
        f"{w}.{t}": task.status
        for w, ws_ in state.workstreams.items()
        for t, task in ws_.tasks.items()
    }


async def _until_waiting(client: Client, run_id: str, task: str) -> None:
    for _ in range(100):
        if (await _statuses(client, run_id)).get(task) == "waiting":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{task} never waited")


def _approval_plan(name: str) -> dict[str, Any]:
    return plan(
        ws(
            "prod",
            echo("plan-change"),
            echo("deploy", needs=["plan-change"], approval={"required": True}),
            echo("announce", needs=["deploy"]),
        ),
        name=name,
    )


async def test_the_graph_shows_the_statuses_of_a_finished_and_a_waiting_run(
    client: Client, task_queue: str, tmp_path: Path, dashboard: str, chromium: Any
) -> None:
    finished = await _start(
        client,
        task_queue,
        tmp_path,
        plan(
            ws(
                "a",
                echo("one"),
                sh("two", "echo 'no space left' >&2; exit 1", needs=["one"]),
                echo("three", needs=["two"]),
            ),
            ws("b", echo("solo"), needs=["a"]),
            name="dash-finished",
            failure_policy="continue",
        ),
    )
    await api.wait_run(client, finished)
    waiting = await _start(client, task_queue, tmp_path, _approval_plan("dash-waiting"))
    await _until_waiting(client, waiting, "prod.deploy")

    done = await asyncio.to_thread(
        _graph,
        chromium,
        f"{dashboard}/#/run/{finished}",
        {"a.one": "succeeded", "a.two": "failed", "a.three": "skipped", "b.solo": "skipped"},
    )
    shown = await _statuses(client, finished)
    assert {k: v for k, v in done.items() if k in shown} == shown  # what the run says

    def links() -> list[str]:
        found = chromium.find_elements("css selector", "#web-ui, #workstream-links a")
        return [a.get_attribute("href") for a in found]

    assert await asyncio.to_thread(links) == [
        f"{UI}/namespaces/default/workflows/{finished}",
        f"{UI}/namespaces/default/workflows/{finished}%2Fa",
        f"{UI}/namespaces/default/workflows/{finished}%2Fb",
    ]

    def waiting_page() -> tuple[dict[str, str], str, list[str]]:
        nodes = _graph(
            chromium,
            f"{dashboard}/#/run/{waiting}",
            {"prod.plan-change": "succeeded", "prod.deploy": "waiting", "prod.announce": "pending"},
        )
        card = chromium.find_element("css selector", ".wait[data-task='prod.deploy']").text
        buttons = [
            b.get_attribute("data-answer")
            for b in chromium.find_elements("css selector", ".wait button")
        ]
        return nodes, card, buttons

    nodes, card, buttons = await asyncio.to_thread(waiting_page)
    assert nodes == await _statuses(client, waiting)
    assert "prod.deploy waits for a person's approval" in card
    assert f"towline approve|reject {waiting} prod.deploy" in card
    assert buttons == ["approve", "reject"]

    def listed() -> dict[str, str]:
        chromium.get(f"{dashboard}/#/")

        def rows() -> dict[str, str] | None:
            found = {
                r.get_attribute("data-run"): r.text
                for r in chromium.find_elements("css selector", "#runs tbody tr")
            }
            return found if finished in found and waiting in found else None

        found: dict[str, str] = _until(chromium, rows, "the list never showed both runs")
        return found

    rows = await asyncio.to_thread(listed)
    assert "waiting approval of prod.deploy" in rows[waiting]
    assert " failed " in f" {rows[finished]} "
    await api.cancel_run(client, waiting)


async def test_an_answer_needs_the_token_and_records_who_gave_it(
    client: Client, task_queue: str, tmp_path: Path, dashboard: str, chromium: Any
) -> None:
    rid = await _start(client, task_queue, tmp_path, _approval_plan("dash-approve"))
    await _until_waiting(client, rid, "prod.deploy")
    page = f"{dashboard}/#/run/{rid}"

    def approve(token: str | None, name: str | None = None) -> str:
        chromium.get(f"{dashboard}/")
        chromium.execute_script("localStorage.clear()")
        if token is not None:
            # Opened as a person opens the printed link: a fresh load of the page.
            chromium.get("about:blank")
            chromium.get(f"{dashboard}/#token={token}")
            # A good token lets the page answer, under a name it asks for.
            access = "#name" if name is not None else "#read-only"
            _until(chromium, lambda: chromium.find_elements("css selector", access), access)
            if name is not None:
                field = chromium.find_element("id", "name")
                field.send_keys(name)
                field.send_keys("\t")  # a change event: the page keeps the name
        chromium.get(page)
        chromium.refresh()
        button = _until(
            chromium,
            lambda: chromium.find_elements("css selector", "button[data-answer='approve']"),
            "no approve button",
        )[0]
        chromium.find_element("css selector", ".wait input[name='note']").send_keys("ship it")
        button.click()
        message: str = _until(
            chromium,
            lambda: (
                chromium.find_element("css selector", ".wait .message").text.strip(" ….")
                not in ("", "approve")
                and chromium.find_element("css selector", ".wait .message").text
            ),
            "no answer came back",
        )
        return message

    refused = await asyncio.to_thread(approve, None)
    assert refused.startswith("answering needs the token"), refused
    refused = await asyncio.to_thread(approve, "not-the-token")
    assert refused.startswith("answering needs the token"), refused
    assert (await _statuses(client, rid))["prod.deploy"] == "waiting"

    approved = await asyncio.to_thread(approve, TOKEN, "ana")
    assert approved == "approve: prod.deploy (recorded as ana (dashboard))", approved
    state = await api.wait_run(client, rid)
    assert state.status == "succeeded"
    deploy = state.workstreams["prod"].tasks["deploy"]
    assert [(d.answer, d.by, d.note) for d in deploy.decisions] == [
        ("approve", "ana (dashboard)", "ship it")
    ]
    shown = await asyncio.to_thread(
        _graph,
        chromium,
        page,
        {"prod.plan-change": "succeeded", "prod.deploy": "succeeded", "prod.announce": "succeeded"},
    )
    assert shown == await _statuses(client, rid)


async def test_up_serves_the_dashboard_and_down_stops_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port, ui, dash = free_port(), free_port(), free_port()
    env = {**os.environ, "TOWLINE_HOME": str(home)}
    up = [
        *("up", "--port", str(port), "--ui-port", str(ui), "--http-port", "0"),
        *("--dashboard-port", str(dash)),
    ]
    try:
        r = await towline(*up, env=env)
        assert r.code == 0, r.err
        found = re.search(rf"dashboard: http://localhost:{dash}/#token=(\S+) ", r.out)
        assert found, r.out
        token_file = home / "dashboard.token"
        assert token_file.read_text().strip() == found[1]
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600  # the token is its owner's
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dash}") as http:
            assert (await http.get("/api/runs")).json() == {"runs": []}
            me = await http.get("/api/me", headers={"authorization": f"Bearer {found[1]}"})
            assert me.json()["can_answer"] is True
        again = await towline(*up, env=env)  # reused, same link
        assert f"dashboard: http://localhost:{dash}/#token={found[1]} " in again.out
    finally:
        down = await towline("down", env=env)
    assert down.code == 0, down.err
    assert down.out.splitlines()[0].startswith("dashboard: stopped (pid ")
    assert not port_open("127.0.0.1", dash)
    assert not port_open("127.0.0.1", port)
