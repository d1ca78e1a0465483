"""``test_gate``: run the tests in the workspace and pass only if enough of them pass.

The command runs like ``shell``'s (:mod:`towline.activities.process`: its own process
group, stopped with its task, output streamed to a log artifact). The gate reads the
JUnit XML report the runner writes: the one named by ``junit:``, or, for pytest
(``pytest ...`` or ``python -m pytest ...``), one it asks for itself with
``--junitxml``. Without a report it goes by the exit code alone.

A gate that does not pass is category ``test_failed`` (not retried: the same code fails
the same tests), its message naming the first failing tests and its outputs attached,
so ``towline status`` shows them. It passes when tests ran, their pass rate
(passed / (passed + failed + errors); skipped tests do not count) is at least
``min_pass_rate``, and the command either exited 0 or its report explains why not. A
command that cannot start is category ``validation``.
"""

from __future__ import annotations

import re
import signal
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field
from temporalio import activity

from towline.activities.artifacts import (
    artifact_file,
    artifact_path,
    artifact_ref,
    publish_artifact,
    write_artifact,
)
from towline.activities.base import ToolInput, tool
from towline.activities.process import run_streamed, working_dir
from towline.errors import ToolError
from towline.toolcall import ToolContext

_TAIL = 16 * 1024  # bytes of each stream kept in memory; the log has everything
_NAMED_IN_MESSAGE = 10  # failing test ids quoted in the error message
_MAX_FAILING = 100  # failing test ids kept in the outputs (workflow history)
_PYTHON = re.compile(r"python[0-9.]*")
_JUNIT_FLAGS = ("--junitxml", "--junit-xml")


class GateInput(ToolInput):
    """A test command, and how good its result must be."""

    command: list[str] = Field(min_length=1, description="argv list, e.g. [python, -m, pytest, -q]")
    junit: str | None = Field(
        None,
        description="the JUnit XML report the command writes, relative to the workspace; "
        "not needed for pytest, which is asked for one",
    )
    min_pass_rate: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="the share of tests that must pass, from 0 to 1 (default 1: all)",
    )
    cwd: str | None = Field(
        None, description="working folder, relative to the workspace; must stay inside it"
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="variables added to the worker's environment"
    )


@dataclass
class Report:
    """What a JUnit report says: counts, and the ids of the tests that did not pass."""

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    failing: list[str] = field(default_factory=list)

    @property
    def ran(self) -> int:
        return self.passed + self.failed + self.errors

    @property
    def total(self) -> int:
        return self.ran + self.skipped


@tool("test_gate", GateInput, "Run the tests in the workspace; fail unless enough pass.")
async def gate(args: GateInput, ctx: ToolContext) -> dict[str, Any]:
    """Outputs: ``passed``, ``failed``, ``errors``, ``skipped``, ``total`` (null without
    a report), ``failing`` (ids such as ``tests/test_x.py::Suite::test_y``),
    ``pass_rate``, ``exit_code``, ``log`` (the full output's artifact), ``junit`` (the
    report's artifact, when there is one) and ``duration_s``."""
    workspace = Path(ctx.workspace).resolve()
    cwd = working_dir(ctx.workspace, args.cwd)
    info = activity.info()
    stem = f"test_gate-{info.activity_id}-{info.attempt}"
    command = list(args.command)
    report_path = _report_path(args, workspace, cwd)
    own_report = None  # the report's artifact, when towline asks pytest for it
    if report_path is None and is_pytest(command):
        own_report = artifact_ref(ctx, f"{stem}-junit.xml")
        report_path = artifact_path(own_report)
        # xunit1 names each test's file, so its id need not be guessed.
        command += [f"--junitxml={report_path}", "-o", "junit_family=xunit1"]
    if report_path is not None:
        report_path.unlink(missing_ok=True)  # never read a report an earlier run left
    log_ref = artifact_ref(ctx, f"{stem}.log")
    started = time.monotonic()
    with artifact_file(log_ref) as log_path, log_path.open("wb") as log:
        code, out = await run_streamed(command, cwd=cwd, env=args.env, log=log, max_output=_TAIL)
    outputs: dict[str, Any] = {
        "exit_code": code,
        "log": log_ref,
        "duration_s": round(time.monotonic() - started, 3),
    }
    if report_path is not None and report_path.is_file():
        data = report_path.read_bytes()
        if own_report is not None:
            publish_artifact(own_report)
        outputs["junit"] = own_report or write_artifact(ctx, f"{stem}-junit.xml", data)
        try:
            report = parse_junit(data, cwd)
        except ET.ParseError as e:
            raise ToolError(
                "tool", f"cannot read the JUnit report {report_path}: {e}", outputs=outputs
            ) from None
        problem = _judge(report, code, args.min_pass_rate, outputs)
    else:
        if report_path is not None and code == 0 and args.junit is not None:
            raise ToolError(
                "validation",
                f"with.junit: the test command exited 0 but wrote no report at {args.junit}",
                hint="check the report's path, relative to the workspace",
                outputs=outputs,
            )
        problem = _judge_exit_code(code, outputs)
    if problem:
        raise ToolError("test_failed", problem, output=out.combined.text(), outputs=outputs)
    return outputs


def is_pytest(command: list[str]) -> bool:
    """Whether ``command`` runs pytest: ``pytest ...`` or ``python -m pytest ...``."""
    program = Path(command[0]).name
    if program in ("pytest", "py.test"):
        return True
    return bool(_PYTHON.fullmatch(program)) and command[1:3] == ["-m", "pytest"]


def _report_path(args: GateInput, workspace: Path, cwd: Path) -> Path | None:
    """The report the command is told to write: ``junit:``, or its own ``--junitxml``."""
    if args.junit is not None:
        return _inside(workspace, workspace / args.junit, f"with.junit: '{args.junit}'")
    for i, arg in enumerate(args.command):
        for flag in _JUNIT_FLAGS:
            if arg.startswith(flag + "="):
                name = arg.split("=", 1)[1]
            elif arg == flag and i + 1 < len(args.command):
                name = args.command[i + 1]
            else:
                continue
            return _inside(workspace, cwd / name, f"the command's {flag} '{name}'")
    return None


def _inside(workspace: Path, path: Path, what: str) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(workspace):
        raise ToolError(
            "validation",
            f"{what} is outside the workspace",
            hint="have the test runner write its report inside the workspace",
        )
    return resolved


def parse_junit(data: bytes, root: Path) -> Report:
    """Count the test cases of a JUnit XML report and name those that did not pass.

    ``root`` is where the runner ran, to tell a module from a class in pytest's
    dotted class names when the report has no ``file`` attribute.
    """
    report = Report()
    for case in ET.fromstring(data).iter("testcase"):
        kinds = {child.tag for child in case}
        if "failure" in kinds:
            report.failed += 1
        elif "error" in kinds:
            report.errors += 1
        elif "skipped" in kinds:
            report.skipped += 1
            continue
        else:
            report.passed += 1
            continue
        report.failing.append(
            case_id(case.get("classname", ""), case.get("name", ""), root, file=case.get("file"))
        )
    return report


def case_id(classname: str, name: str, root: Path, *, file: str | None = None) -> str:
    """A test's id as pytest writes it, ``tests/test_x.py::Suite::test_y``, when known.

    pytest's reports name a test by a dotted class name (``tests.test_x.Suite``) and,
    in the xunit1 format, its file. Other runners' ids come back as ``classname::name``.
    """
    parts = [p for p in classname.split(".") if p]
    if file and file.endswith(".py"):
        module = file[:-3].replace("/", ".").split(".")
        inner = parts[len(module) :] if parts[: len(module)] == module else []
        return "::".join([file, *inner, name])
    for i in range(len(parts), 0, -1):
        candidate = "/".join(parts[:i]) + ".py"
        if (root / candidate).is_file():
            return "::".join([candidate, *parts[i:], name])
    return "::".join(p for p in (classname, name) if p)


def _judge(report: Report, code: int, min_pass_rate: float, outputs: dict[str, Any]) -> str | None:
    """Fill the outputs from the report; why the gate fails, or None when it passes."""
    rate = report.passed / report.ran if report.ran else 0.0
    outputs.update(
        passed=report.passed,
        failed=report.failed,
        errors=report.errors,
        skipped=report.skipped,
        total=report.total,
        failing=report.failing[:_MAX_FAILING],
        pass_rate=round(rate, 4),
    )
    if len(report.failing) > _MAX_FAILING:
        outputs["failing_truncated"] = True
    if report.ran == 0:
        return f"no tests ran ({report.skipped} skipped; exit code {code})"
    bad = report.failed + report.errors
    if rate < min_pass_rate:
        named = ", ".join(report.failing[:_NAMED_IN_MESSAGE])
        more = len(report.failing) - _NAMED_IN_MESSAGE
        if more > 0:
            named += f" (and {more} more)"
        return (
            f"{bad} of {report.ran} tests failed (pass rate {rate:.2f}, "
            f"needs {min_pass_rate:.2f}): {named}"
        )
    if code != 0 and bad == 0:
        return f"the test command {_exit(code)}, though its report shows no failure"
    return None


def _judge_exit_code(code: int, outputs: dict[str, Any]) -> str | None:
    """Without a report: the exit code decides, and the counts are unknown (null)."""
    outputs.update(
        passed=None,
        failed=None,
        errors=None,
        skipped=None,
        total=None,
        failing=[],
        pass_rate=1.0 if code == 0 else 0.0,
    )
    if code == 0:
        return None
    return f"the test command {_exit(code)} (no JUnit report to say which tests failed)"


def _exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
