"""Loading and validating plans in a child process with a deadline: a hang fails the test.

The child (a fresh interpreter, started once and reused) reads each plan text with
``load_plan`` and with ``towline validate`` (``run_cli``, in-process there) and says what
came of it. The parent waits at most a deadline for the answer; past it, the child is
killed and the test fails naming the input. A hang deep in C code (a regular expression,
a parser) is caught too, which a signal in the test's own process could not interrupt.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import tempfile
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

DEADLINE = 30.0  # seconds for one plan (loaded and validated); a few at most, under load
STARTUP = 120.0  # seconds for the child to import towline, on a loaded machine


@dataclass(frozen=True)
class Outcome:
    """What loading one plan gave, and what ``towline validate`` said of it."""

    loaded: str  # "ok", "plan_error" or "crash"
    detail: str  # the plan's name, the PlanError's text, or the traceback
    code: int  # towline validate's exit code
    out: str
    err: str


def _serve(conn: Connection) -> None:
    from towline.plan.load import PlanError, load_plan
    from towline.starter.cli import run_cli

    folder = tempfile.mkdtemp(prefix="planguard-")
    conn.send("ready")
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request == "stall":  # for the harness's own test: never answer
            time.sleep(3600)
        data, suffix, sets = request
        path = os.path.join(folder, f"plan{suffix}")
        with open(path, "wb") as f:
            f.write(data)
        try:
            spec = load_plan(path, sets=sets)
            loaded, detail = "ok", spec.name
        except PlanError as e:
            loaded, detail = "plan_error", str(e)
        except BaseException:
            loaded, detail = "crash", traceback.format_exc()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = run_cli(["validate", path, *(f"--set={s}" for s in sets)])
            except BaseException:
                code, err = -1, io.StringIO(traceback.format_exc())
        conn.send(Outcome(loaded, detail, code, out.getvalue(), err.getvalue()))


class PlanGuard:
    """The child process, started on first use and again after a hang killed it."""

    def __init__(self, deadline: float = DEADLINE) -> None:
        self.deadline = deadline
        self._proc: Any = None
        self._conn: Connection | None = None

    def check(
        self, data: bytes | str, *, suffix: str = ".yaml", sets: list[str] | None = None
    ) -> Outcome:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        shown = raw[:300] + (b"..." if len(raw) > 300 else b"")
        outcome = self._ask(
            (raw, suffix, list(sets or [])),
            f"a {len(raw)}-byte {suffix} plan, sets {sets!r}: {shown!r}",
        )
        assert isinstance(outcome, Outcome)
        return outcome

    def stall(self) -> None:
        """Ask the child for nothing but a hang (to test the guard itself)."""
        self._ask("stall", "a stall")

    def _ask(self, request: object, what: str) -> object:
        conn = self._child()
        conn.send(request)
        if not conn.poll(self.deadline):
            self.close()
            raise AssertionError(f"no answer within {self.deadline:g}s (a hang) for {what}")
        return conn.recv()

    def _child(self) -> Connection:
        if self._conn is None:
            ctx = multiprocessing.get_context("spawn")  # no fork of a threaded process
            parent, child = ctx.Pipe()
            self._proc = ctx.Process(target=_serve, args=(child,), daemon=True)
            self._proc.start()
            child.close()
            if not parent.poll(STARTUP) or parent.recv() != "ready":
                self.close()
                raise AssertionError("the plan-checking child did not start")
            self._conn = parent
        return self._conn

    def close(self) -> None:
        """Stop the child (by its own handle: it is ours)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(10)
            self._proc = None
