"""``towline logs``, ``towline tools`` and ``towline new-tool`` as a user runs them.

Each command is a real process. The worker is the test's own (in-process, on its own task
queue), so the tools' failures come from real servers the test starts on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.conftest import RunPlan
from tests.e2e.test_cli import TOWLINE, towline
from tests.fakes.chat import chat_server
from towline.activities.tools import TOOLS
from towline.starter.scaffold import REGISTRY, TESTS_DIR, TOOLS_DIR
from towline.worker.devserver import free_port

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
MCP_SERVER = ROOT / "tests" / "fakes" / "mcp_server.py"
BIG = 300 * 1024  # bytes printed by a task: above the outputs' cap


@pytest.fixture
def conn(dev_server: str, task_queue: str) -> list[str]:
    return ["--address", dev_server, "--task-queue", task_queue]


def _write_plan(folder: Path, tasks: list[dict[str, Any]]) -> Path:
    plan = {
        "version": 1,
        "name": "e2e-tools",
        "settings": {"failure_policy": "continue"},
        "defaults": {"retry": {"max_attempts": 1}},
        "workstreams": [{"id": "w", "tasks": tasks}],
    }
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


async def test_logs_shows_a_tasks_log_and_its_large_outputs(
    conn: list[str], tmp_path: Path
) -> None:
    script = f"import sys; print('hello from the task'); sys.stdout.write('y' * {BIG})"
    plan = _write_plan(
        tmp_path,
        [
            {"id": "say", "tool": "shell", "with": {"command": ["sh", "-c", "echo one; echo two"]}},
            {
                "id": "big",
                "tool": "shell",
                "with": {"command": [sys.executable, "-c", script], "max_output": 400 * 1024},
            },
            {"id": "note", "tool": "echo", "with": {"note": "no log here"}},
        ],
    )
    r = await towline("run", str(plan), "--wait", "--json", *conn)
    assert r.code == 0, r.err
    run = json.loads(r.out)
    rid = run["run_id"]
    big = run["workstreams"]["w"]["tasks"]["big"]["outputs"]
    assert big["exit_code"] == 0  # small outputs stay in history...
    assert big["stdout"]["bytes"] > BIG  # ...the large one is a reference
    assert big["stdout"]["$artifact"].startswith(f"artifact://{rid}/w/big/")

    say = await towline("logs", rid, "w.say", *conn)
    assert say.code == 0, say.err
    assert say.out == "one\ntwo\n"  # one section: no headers
    shown = await towline("logs", rid, "w.big", *conn)
    assert shown.code == 0, shown.err
    assert shown.out.count("y" * BIG) == 2  # the log, and the stored stdout
    assert "==> stdout: artifact://" in shown.out
    note = await towline("logs", rid, "note", *conn)  # a unique task id is enough
    assert json.loads(note.out) == {"note": "no log here"}

    unknown = await towline("logs", rid, "w.sya", *conn)
    assert unknown.code == 2
    assert unknown.err.strip() == (
        f"towline: unknown task 'w.sya' in run {rid} (did you mean 'w.say'?); "
        "its tasks: w.say, w.big, w.note"
    )
    no_run = await towline("logs", "no-such-run", "w.say", *conn)
    assert no_run.code == 2
    assert "unknown run 'no-such-run'" in no_run.err


async def test_bad_tool_input_fails_with_a_clear_error_naming_the_task(
    conn: list[str], tmp_path: Path
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/hook"
    with chat_server() as chat:
        plan = _write_plan(
            tmp_path,
            [
                {"id": "notify", "tool": "http", "with": {"method": "POST", "url": unreachable}},
                {
                    "id": "lookup",
                    "tool": "mcp",
                    "with": {"command": [sys.executable, str(MCP_SERVER), "stdio"], "tool": "ad"},
                },
                {
                    "id": "summarise",
                    "tool": "llm",
                    "with": {"base_url": f"{chat.url}/v1", "model": "html", "prompt": "hi"},
                },
            ],
        )
        r = await towline("run", str(plan), "--wait", *conn)

    assert r.code == 1, r.err
    lines = r.out.splitlines()
    assert f"task w.notify: failed (tool: cannot reach {unreachable}: Connection refused)" in lines
    lookup = next(line for line in lines if line.startswith("task w.lookup: failed"))
    assert lookup.startswith("task w.lookup: failed (validation: the MCP server `")
    assert "has no tool 'ad' (did you mean 'add'?); its tools: add, echo," in lookup
    summarise = next(line for line in lines if line.startswith("task w.summarise: failed"))
    assert summarise == (
        f"task w.summarise: failed (tool: the reply from {chat.url}/v1/chat/completions is not "
        "JSON (HTTP 200, text/html): <html><body>502 Bad Gateway</body></html>)"
    )


async def test_tools_lists_every_tool_with_its_input_schema() -> None:
    r = await towline("tools", "--json")
    assert r.code == 0, r.err
    catalogue = json.loads(r.out)
    assert set(catalogue) == set(TOOLS)
    for name in ("http", "llm", "mcp", "shell"):
        assert catalogue[name]["input"]["type"] == "object"
        assert catalogue[name]["outputs"].startswith("Outputs:")
    assert catalogue["http"]["input"]["required"] == ["url"]
    assert "json" in catalogue["llm"]["input"]["properties"]  # keys as a plan writes them

    md = await towline("tools", "--markdown")
    assert md.code == 0
    assert md.out == (ROOT / "docs" / "tools.md").read_text()
    both = await towline("tools", "--json", "--markdown")
    assert both.code == 2


def _checkout(root: Path) -> Path:
    """A folder with a towline checkout's layout, for new-tool to write into."""
    (root / TOOLS_DIR).mkdir(parents=True)
    (root / REGISTRY).write_text("")
    (root / TESTS_DIR).mkdir(parents=True)
    return root


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def scaffolded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """``towline new-tool greet`` in a scratch checkout; the tool registered for the test.

    Registered before the test's worker starts (fixtures run in the order the test asks
    for them), as the registry line the command prints would register it.
    """
    root = _checkout(tmp_path / "checkout")
    done = subprocess.run(
        [TOWLINE, "new-tool", "greet", "--dir", str(root)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    module = _load(root / TOOLS_DIR / "greet.py", "towline.activities.tools.greet")
    test = _load(root / TESTS_DIR / "test_greet.py", "tests.integration.test_greet_scaffolded")
    monkeypatch.setitem(TOOLS, "greet", module.greet)
    try:
        yield {"root": root, "out": done.stdout, "module": module, "test": test}
    finally:
        sys.modules.pop("towline.activities.tools.greet", None)
        sys.modules.pop("tests.integration.test_greet_scaffolded", None)


async def test_new_tool_scaffolds_a_working_tool_and_test(
    scaffolded: dict[str, Any], run_plan: RunPlan
) -> None:
    root = scaffolded["root"]
    assert scaffolded["out"].splitlines() == [
        f"wrote {root / TOOLS_DIR / 'greet.py'}",
        f"wrote {root / TESTS_DIR / 'test_greet.py'}",
        f"register it in {REGISTRY}:",
        "    from towline.activities.tools.greet import greet",
        "    ... and add greet to the tuple that builds TOOLS",
        f"then run its test: python -m pytest {root / TESTS_DIR / 'test_greet.py'}",
    ]
    ruff = str(Path(sys.executable).parent / "ruff")
    lint = await asyncio.create_subprocess_exec(
        ruff,
        "check",
        "--no-cache",
        "--config",
        str(ROOT / "pyproject.toml"),
        str(root),
        stdout=asyncio.subprocess.PIPE,
    )
    found, _ = await lint.communicate()
    assert lint.returncode == 0, found.decode()  # the project's own lint rules
    # The generated tests, run as written, through a real worker and dev server.
    await scaffolded["test"].test_greet_repeats_the_message(run_plan)
    await scaffolded["test"].test_greet_rejects_a_blank_message(run_plan)


async def test_new_tool_refuses_bad_names_and_existing_files(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    bad = await towline("new-tool", "Greet-Me", "--dir", str(root))
    assert bad.code == 2
    assert "'Greet-Me' cannot name a tool module" in bad.err
    taken = await towline("new-tool", "shell", "--dir", str(root))
    assert taken.code == 2
    assert "a tool named 'shell' is already registered" in taken.err
    assert (await towline("new-tool", "greet", "--dir", str(root))).code == 0
    again = await towline("new-tool", "greet", "--dir", str(root))
    assert again.code == 2
    assert "greet.py already exists" in again.err
    elsewhere = await towline("new-tool", "greet", "--dir", str(tmp_path / "nowhere"))
    assert elsewhere.code == 2
    assert "is not a towline checkout" in elsewhere.err
