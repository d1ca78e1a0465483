"""The screenshots in docs/images/, taken as a person would see the pages.

    .venv/bin/python -m tests.screenshots

Starts its own dev server (with its Web UI), a worker and ``towline dashboard`` on free
ports, runs a plan until it waits for an approval, and saves, with headless Chromium:
the dashboard's list of runs, the waiting run's page (its unit-tests' logs open), and
the run's page in the Temporal Web UI. Everything it started is stopped at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests import browser
from towline.worker import devserver

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
TOWLINE = str(Path(sys.executable).parent / "towline")
RUN_ID = "release-train-7f3a2c"
TOKEN = "screenshot-token-0123456789"


def _shell(tid: str, script: str, **extra: object) -> dict[str, object]:
    return {"id": tid, "tool": "shell", "with": {"command": ["sh", "-c", script]}, **extra}


PLAN = {
    "version": 1,
    "name": "release-train",
    "defaults": {"retry": {"max_attempts": 1}},
    "workstreams": [
        {
            "id": "build",
            "tasks": [
                _shell("checkout", "printf 'def add(a, b):\\n    return a - b\\n' > calc.py"),
                _shell("compile", "echo compiling; sleep 1; echo done", needs=["checkout"]),
                _shell(
                    "unit-tests",
                    "grep -q 'a + b' calc.py && echo '12 passed' "
                    "|| { echo 'FAILED test_add: -1 != 5' >&2; exit 1; }",
                    needs=["compile"],
                    on_failure={
                        "strategy": "fix",
                        "fix": {
                            "tool": "shell",
                            "with": {
                                "command": [
                                    "sh",
                                    "-c",
                                    "sed -i 's/a - b/a + b/' calc.py; echo patched",
                                ]
                            },
                        },
                    },
                ),
                _shell("lint", "echo lint clean", needs=["compile"]),
            ],
        },
        {
            "id": "database",
            "tasks": [
                _shell(
                    "create-table",
                    "echo 'CREATE TABLE orders' >> ledger.sql",
                    rollback={
                        "tool": "shell",
                        "with": {"command": ["sh", "-c", "echo 'DROP TABLE orders' >> ledger.sql"]},
                    },
                ),
                _shell("backfill", "sleep 1; echo 'backfilled 1200 rows'", needs=["create-table"]),
            ],
        },
        {
            "id": "production",
            "needs": ["build", "database"],
            "tasks": [
                _shell(
                    "deploy",
                    "echo deploying",
                    approval={"required": True, "timeout": "48h", "on_timeout": "reject"},
                ),
                _shell("smoke-test", "echo smoke ok", needs=["deploy"]),
                {"id": "announce", "tool": "echo", "needs": ["smoke-test"], "with": {"m": "done"}},
            ],
        },
    ],
}


def _wait_for_port(port: int, what: str) -> None:
    deadline = time.monotonic() + 60
    while not devserver.port_open("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start on port {port}")
        time.sleep(0.2)


def main() -> None:
    found = browser.find_or_install()
    if isinstance(found, str):
        raise SystemExit(found)
    folder = Path(tempfile.mkdtemp(prefix="towline-shots-"))
    port, ui, dash = devserver.free_port(), devserver.free_port(), devserver.free_port()
    address = f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "TOWLINE_HOME": str(folder / "home"),
        "TOWLINE_UI_URL": f"http://localhost:{ui}",
    }
    (folder / "token").write_text(TOKEN)
    (folder / "plan.yaml").write_text(yaml.safe_dump(PLAN, sort_keys=False))
    server = devserver.start(
        devserver.DevServerOptions(port=port, ui_port=ui, db_filename=folder / "temporal.db"),
        log=folder / "server.log",
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _wait_for_port(ui, "the Web UI")
        conn = ["--address", address]
        procs.append(subprocess.Popen([TOWLINE, "worker", *conn, "--http-port", "0"], env=env))
        procs.append(
            subprocess.Popen(
                [
                    TOWLINE,
                    "dashboard",
                    *conn,
                    "--port",
                    str(dash),
                    "--token-file",
                    str(folder / "token"),
                ],
                env=env,
            )
        )
        _wait_for_port(dash, "the dashboard")
        run = [TOWLINE, "run", str(folder / "plan.yaml"), "--id", RUN_ID, *conn]
        subprocess.run(run, env=env, check=True)
        for _ in range(300):
            status = subprocess.run(
                [TOWLINE, "status", RUN_ID, "--json", *conn], env=env, capture_output=True
            )
            if status.returncode == 0 and json.loads(status.stdout)["status"] == "waiting":
                break
            time.sleep(0.2)
        with browser.chrome(*found) as page:
            page.set_window_size(1280, 560)
            page.get(f"http://localhost:{dash}/#token={TOKEN}")
            time.sleep(1.5)
            page.save_screenshot(str(IMAGES / "dashboard-runs.png"))
            page.get(f"http://localhost:{dash}/#/run/{RUN_ID}")
            time.sleep(2)
            page.find_element("css selector", "g.node[data-task='build.unit-tests']").click()
            time.sleep(1.5)
            height = page.execute_script("window.scrollTo(0, 0); return document.body.scrollHeight")
            page.set_window_size(1280, height + 220)
            time.sleep(0.5)
            page.save_screenshot(str(IMAGES / "dashboard-run.png"))
            page.set_window_size(1440, 1000)
            page.get(f"http://localhost:{ui}/namespaces/default/workflows/{RUN_ID}")
            time.sleep(6)
            page.save_screenshot(str(IMAGES / "web-ui-waiting-run.png"))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        devserver.stop(server)
    for name in ("dashboard-runs.png", "dashboard-run.png", "web-ui-waiting-run.png"):
        print(f"wrote {IMAGES / name} ({(IMAGES / name).stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
