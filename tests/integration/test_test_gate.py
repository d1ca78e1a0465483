"""The ``test_gate`` tool through whole towline runs: real pytest runs on a real repository."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunPlan
from tests.helpers import make_repo, plan, ws
from towline.activities.artifacts import read_artifact
from towline.activities.tools.test_gate import case_id, is_pytest, parse_junit
from towline.state import RunState, TaskState

PYTEST = [sys.executable, "-m", "pytest", "-q"]
GOOD = "def chunked(seq, n):\n    return [seq[i : i + n] for i in range(0, len(seq), n)]\n"
# Wrong whenever the length is a multiple of n: the last chunk comes out empty.
BAD = (
    "def chunked(seq, n):\n"
    "    out = [seq[i : i + n] for i in range(0, len(seq), n)]\n"
    "    return out + [[]] if len(seq) % n == 0 and seq else out\n"
)
TESTS = """import unittest

from chunks import chunked


class ChunkedTests(unittest.TestCase):
    def test_even(self):
        self.assertEqual(chunked([1, 2, 3, 4], 2), [[1, 2], [3, 4]])

    def test_odd(self):
        self.assertEqual(chunked([1, 2, 3], 2), [[1, 2], [3]])

    @unittest.skip("not today")
    def test_skipped(self):
        pass


def test_empty():
    assert chunked([], 3) == []


def test_one():
    assert chunked([1], 3) == [[1]]
"""


def _repo(tmp_path: Path, impl: str = GOOD, **more: str) -> Path:
    """A small Python project with pytest tests, as the user's checkout."""
    files = {
        "pyproject.toml": '[tool.pytest.ini_options]\npythonpath = ["."]\n',
        ".gitignore": "__pycache__/\n.pytest_cache/\n",
        "chunks/__init__.py": impl,
        "tests/test_more.py": TESTS,
        **more,
    }
    return make_repo(tmp_path / "repo", files)


def _plan(**with_: Any) -> dict[str, Any]:
    task = {"id": "gate", "tool": "test_gate", "with": with_, "retry": {"max_attempts": 3}}
    return plan(ws("w", task, repo={"path": "repo"}))


def _task(state: RunState) -> TaskState:
    return state.workstreams["w"].tasks["gate"]


async def test_passing_tests_pass_the_gate_with_counts_and_a_log(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    _repo(tmp_path)

    state = await run_plan(_plan(command=PYTEST))

    task = _task(state)
    assert task.status == "succeeded", task.error
    out = task.outputs
    assert (out["passed"], out["failed"], out["errors"], out["skipped"]) == (4, 0, 0, 1)
    assert out["total"] == 5
    assert out["failing"] == []
    assert out["pass_rate"] == 1.0
    assert out["exit_code"] == 0
    assert b"4 passed, 1 skipped" in read_artifact(out["log"])
    assert b'name="test_even"' in read_artifact(out["junit"])


async def test_failing_tests_fail_the_gate_naming_them(run_plan: RunPlan, tmp_path: Path) -> None:
    _repo(tmp_path, BAD)

    state = await run_plan(_plan(command=PYTEST))

    task = _task(state)
    assert task.status == "failed"
    assert task.error is not None
    assert task.error.category == "test_failed"
    assert task.attempts == 1  # the same code fails the same tests: not retried
    assert "1 of 4 tests failed" in task.error.message
    assert "tests/test_more.py::ChunkedTests::test_even" in task.error.message
    assert "AssertionError" in (task.error.output or "")
    out = task.outputs
    assert out["failing"] == ["tests/test_more.py::ChunkedTests::test_even"]
    assert (out["passed"], out["failed"], out["total"]) == (3, 1, 5)
    assert out["pass_rate"] == 0.75
    assert b"FAILED tests/test_more.py::ChunkedTests::test_even" in read_artifact(out["log"])


async def test_a_report_the_command_asks_for_itself_is_the_one_read(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    repo = _repo(tmp_path, BAD)

    state = await run_plan(_plan(command=[*PYTEST, "--junitxml=reports/junit.xml"]))

    task = _task(state)
    assert task.error is not None
    assert task.error.category == "test_failed"
    # pytest's default report format names no files: the ids are found from the tree.
    assert task.outputs["failing"] == ["tests/test_more.py::ChunkedTests::test_even"]
    assert not (repo / "reports").exists()  # written in the workspace, not the checkout


@pytest.mark.parametrize(("min_pass_rate", "status"), [(0.7, "succeeded"), (0.8, "failed")])
async def test_min_pass_rate_decides(
    run_plan: RunPlan, tmp_path: Path, min_pass_rate: float, status: str
) -> None:
    _repo(tmp_path, BAD)

    state = await run_plan(_plan(command=PYTEST, min_pass_rate=min_pass_rate))

    task = _task(state)
    assert task.status == status, task.error
    assert task.outputs["pass_rate"] == 0.75
    assert task.outputs["failing"] == ["tests/test_more.py::ChunkedTests::test_even"]


async def test_errors_are_counted_apart_from_failures(run_plan: RunPlan, tmp_path: Path) -> None:
    broken = "import pytest\n\n@pytest.fixture\ndef boom():\n    raise RuntimeError\n\n"
    broken += "def test_uses_boom(boom):\n    pass\n"
    _repo(tmp_path, **{"tests/test_broken.py": broken})

    state = await run_plan(_plan(command=PYTEST))

    task = _task(state)
    assert task.error is not None
    assert task.error.category == "test_failed"
    assert (task.outputs["errors"], task.outputs["failed"]) == (1, 0)
    assert task.outputs["failing"] == ["tests/test_broken.py::test_uses_boom"]


async def test_no_tests_is_a_failed_gate(run_plan: RunPlan, tmp_path: Path) -> None:
    make_repo(tmp_path / "repo", {"README": "nothing to test\n"})

    state = await run_plan(_plan(command=[*PYTEST, "-p", "no:cacheprovider"]))

    task = _task(state)
    assert task.error is not None
    assert task.error.category == "test_failed"
    assert "no tests ran" in task.error.message


REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="suite" tests="4">
  <testcase classname="pkg.Widget" name="renders"/>
  <testcase classname="pkg.Widget" name="resizes"><failure message="off by one"/></testcase>
  <testcase classname="pkg.Widget" name="loads"><error message="no file"/></testcase>
  <testcase classname="pkg.Widget" name="later"><skipped/></testcase>
</testsuite></testsuites>
"""


async def test_junit_report_of_any_runner_is_read(run_plan: RunPlan, tmp_path: Path) -> None:
    make_repo(tmp_path / "repo", {"report.xml.in": REPORT})
    script = "mkdir -p out && cp report.xml.in out/report.xml && exit 1"

    state = await run_plan(
        _plan(command=["sh", "-c", script], junit="out/report.xml", min_pass_rate=0.3)
    )

    task = _task(state)
    # 1 of the 3 that ran passed (skipped ones do not count): 0.33, over 0.3; and the
    # failures explain the exit code 1.
    assert task.status == "succeeded", task.error
    out = task.outputs
    assert (out["passed"], out["failed"], out["errors"], out["skipped"]) == (1, 1, 1, 1)
    assert out["failing"] == ["pkg.Widget::resizes", "pkg.Widget::loads"]
    assert out["pass_rate"] == round(1 / 3, 4)


async def test_without_a_report_the_exit_code_decides(run_plan: RunPlan, tmp_path: Path) -> None:
    make_repo(tmp_path / "repo", {"x": "1\n"})

    passed = await run_plan(_plan(command=["sh", "-c", "echo all good"]))
    failed = await run_plan(_plan(command=["sh", "-c", "echo broken; exit 3"]))

    assert _task(passed).status == "succeeded", _task(passed).error
    assert _task(passed).outputs["passed"] is None
    assert _task(passed).outputs["pass_rate"] == 1.0
    error = _task(failed).error
    assert error is not None
    assert error.category == "test_failed"
    assert "exited with code 3" in error.message
    assert "broken" in (error.output or "")


async def test_a_report_asked_for_but_not_written_is_a_validation_error(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {"x": "1\n"})

    state = await run_plan(_plan(command=["true"], junit="reports/junit.xml"))

    error = _task(state).error
    assert error is not None
    assert error.category == "validation"
    assert "wrote no report at reports/junit.xml" in error.message


async def test_a_report_outside_the_workspace_is_rejected(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {"x": "1\n"})

    state = await run_plan(_plan(command=["true"], junit="../elsewhere.xml"))

    error = _task(state).error
    assert error is not None
    assert error.category == "validation"
    assert "with.junit: '../elsewhere.xml' is outside the workspace" in error.message


async def test_a_command_that_cannot_start_is_a_validation_error(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {"x": "1\n"})

    state = await run_plan(_plan(command=["no-such-test-runner", "--all"]))

    task = _task(state)
    assert task.error is not None
    assert task.error.category == "validation"
    assert "command not found: 'no-such-test-runner'" in task.error.message
    assert task.attempts == 1


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["pytest", "-q"], True),
        (["/usr/bin/py.test"], True),
        (["python", "-m", "pytest"], True),
        (["/opt/venv/bin/python3.11", "-m", "pytest", "tests"], True),
        (["python", "-m", "unittest"], False),
        (["make", "test"], False),
    ],
)
def test_is_pytest(command: list[str], expected: bool) -> None:
    assert is_pytest(command) is expected


def test_case_ids_follow_pytest_with_or_without_a_file_attribute(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_more.py").write_text("")
    want = "tests/test_more.py::ChunkedTests::test_even"
    assert case_id("tests.test_more.ChunkedTests", "test_even", tmp_path) == want
    assert case_id("x", "test_even", tmp_path, file="tests/test_more.py") == (
        "tests/test_more.py::test_even"
    )
    assert (
        case_id("tests.test_more.ChunkedTests", "test_even", tmp_path, file="tests/test_more.py")
        == want
    )
    assert case_id("tests.test_more", "test_p[1-2]", tmp_path) == "tests/test_more.py::test_p[1-2]"
    assert case_id("com.example.Suite", "works", tmp_path) == "com.example.Suite::works"


def test_parse_junit_counts_each_case_once(tmp_path: Path) -> None:
    report = parse_junit(REPORT.encode(), tmp_path)
    assert (report.passed, report.failed, report.errors, report.skipped) == (1, 1, 1, 1)
    assert (report.ran, report.total) == (3, 4)
