"""The runs the soak starts: plans of several shapes, made from a seeded generator.

Every shell task ends by appending one line to the ledger once it has done its work:
``<run> <workstream> <task> <worker home> <start> <end>`` (seconds since the epoch), so a
task whose script ran to its end twice shows as two lines.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Workers are noticed dead within a third of this (the workspace calls' heartbeat
# timeout); the soak's SIGSTOPs last longer than that.
TAKEOVER = "30s"
HEARTBEAT_S = 10.0  # a third of TAKEOVER
TOOL_HEARTBEAT_S = 20.0  # the heartbeat timeout of calls outside a workspace

SHAPES: dict[str, int] = {  # shape -> weight among the runs started continuously
    "chain": 3,
    "fanout": 2,
    "multirepo": 2,
    "approval": 2,
    "pause": 1,
    "fixloop": 2,
}


@dataclass
class Paths:
    ledger: Path
    plan_dir: Path  # holds patches/<repo>.diff
    repos: dict[str, str]  # repo name -> clone URL
    webhook: str


@dataclass
class Shaped:
    """A run to start, and what the scripted people will do with it."""

    run_id: str
    shape: str
    plan: dict[str, Any]
    approve: bool = True  # the approval's answer
    pause_at: float = 0.0  # seconds after the start, 0: never paused
    pause_for: float = 0.0
    expect: set[str] = field(default_factory=set)  # statuses the run may end with


def step(paths: Paths, run: str, ws: str, tid: str, work: str = "", seconds: float = 0.0) -> str:
    """A script doing ``work`` (and sleeping), then appending its ledger line."""
    wait = f"sleep {seconds:.2f}; " if seconds else ""
    line = f'"{run} {ws} {tid} ${{TOWLINE_HOME##*/}} $s $(date +%s.%N)"'
    return f"s=$(date +%s.%N); {wait}{work}echo {line} >> {paths.ledger}"


def sh(tid: str, script: str, **extra: Any) -> dict[str, Any]:
    extra.setdefault("retry", {"max_attempts": 3, "initial_interval": "1s"})
    return {"id": tid, "tool": "shell", "with": {"command": ["sh", "-c", script]}, **extra}


def _plan(
    run: str, shape: str, paths: Paths, workstreams: list[dict[str, Any]], **settings: Any
) -> dict[str, Any]:
    return {
        "version": 1,
        "name": f"soak-{shape}",
        "settings": {"takeover": TAKEOVER, **settings},
        "notify": [{"webhook": paths.webhook, "format": "json", "timeout": "3m"}],
        "workstreams": workstreams,
    }


def make(shape: str, run: str, rng: random.Random, paths: Paths) -> Shaped:
    """The run ``run`` of ``shape``."""
    build = _BUILDERS[shape]
    return build(run, rng, paths)


def _chain(run: str, rng: random.Random, paths: Paths) -> Shaped:
    n = rng.randint(3, 6)
    tasks = [
        sh(
            f"t{i}",
            step(paths, run, "c", f"t{i}", seconds=rng.uniform(0.2, 1.5)),
            **({"needs": [f"t{i - 1}"]} if i else {}),
        )
        for i in range(n)
    ]
    return Shaped(
        run,
        "chain",
        _plan(run, "chain", paths, [{"id": "c", "tasks": tasks}]),
        expect={"succeeded"},
    )


def _fanout(run: str, rng: random.Random, paths: Paths) -> Shaped:
    width = rng.randint(3, 5)
    wss: list[dict[str, Any]] = [
        {"id": "root", "tasks": [sh("seed", step(paths, run, "root", "seed", seconds=0.3))]}
    ]
    for i in range(width):
        wid = f"f{i}"
        wss.append(
            {
                "id": wid,
                "needs": ["root"],
                "tasks": [
                    sh("a", step(paths, run, wid, "a", seconds=rng.uniform(0.2, 1.0))),
                    sh("b", step(paths, run, wid, "b", seconds=rng.uniform(0.2, 1.0)), needs=["a"]),
                ],
            }
        )
    wss.append(
        {
            "id": "join",
            "needs": [f"f{i}" for i in range(width)],
            "tasks": [sh("sum", step(paths, run, "join", "sum"))],
        }
    )
    return Shaped(run, "fanout", _plan(run, "fanout", paths, wss), expect={"succeeded"})


def _multirepo(run: str, rng: random.Random, paths: Paths) -> Shaped:
    """A patch to each repository, a change, and a test gate; a failing gate rolls its
    workstream back (newest first: the change, then the patch)."""
    failing = rng.random() < 0.4
    wss = []
    for name, url in paths.repos.items():
        patch = {"patch": f"patches/{name}.diff"}
        gate_work = "exit 1; " if failing and name == "b" else "grep -q patched README.md; "
        undo = step(paths, run, name, "edit.rollback", work="sed -i /soak/d changes.txt; ")
        wss.append(
            {
                "id": name,
                "repo": {"url": url},
                "tasks": [
                    {
                        "id": "apply",
                        "tool": "patch.apply",
                        "with": patch,
                        "rollback": {"tool": "patch.revert", "with": patch},
                    },
                    {
                        **sh(
                            "edit",
                            step(
                                paths,
                                run,
                                name,
                                "edit",
                                work="echo soak >> changes.txt; ",
                                seconds=0.3,
                            ),
                            needs=["apply"],
                        ),
                        "rollback": {"tool": "shell", "with": {"command": ["sh", "-c", undo]}},
                    },
                    sh(
                        "gate",
                        step(paths, run, name, "gate", work=gate_work),
                        needs=["edit"],
                        retry={"max_attempts": 1},
                    ),
                ],
            }
        )
    expect = {"failed", "rolled_back"} if failing else {"succeeded"}
    return Shaped(
        run,
        "multirepo",
        _plan(run, "multirepo", paths, wss, failure_policy="continue"),
        expect=expect,
    )


def _approval(run: str, rng: random.Random, paths: Paths) -> Shaped:
    tasks = [
        sh("prepare", step(paths, run, "d", "prepare", seconds=0.3)),
        sh(
            "deploy", step(paths, run, "d", "deploy", seconds=0.3), needs=["prepare"], approval=True
        ),
        sh("verify", step(paths, run, "d", "verify"), needs=["deploy"]),
    ]
    approve = rng.random() < 0.85
    return Shaped(
        run,
        "approval",
        _plan(run, "approval", paths, [{"id": "d", "tasks": tasks}]),
        approve=approve,
        expect={"succeeded"} if approve else {"failed", "skipped"},
    )


def _pause(run: str, rng: random.Random, paths: Paths) -> Shaped:
    tasks = [
        sh(
            f"t{i}",
            step(paths, run, "p", f"t{i}", seconds=rng.uniform(0.5, 1.5)),
            **({"needs": [f"t{i - 1}"]} if i else {}),
        )
        for i in range(6)
    ]
    return Shaped(
        run,
        "pause",
        _plan(run, "pause", paths, [{"id": "p", "tasks": tasks}]),
        pause_at=rng.uniform(1.0, 4.0),
        pause_for=rng.uniform(3.0, 15.0),
        expect={"succeeded"},
    )


def _fixloop(run: str, rng: random.Random, paths: Paths) -> Shaped:
    """A build that fails until a fix (a shell call in the same workspace) makes it pass."""
    fix = step(paths, run, "b", "build.fix", work="touch fixed.flag; ")
    tasks = [
        sh(
            "build",
            step(paths, run, "b", "build", work="test -f fixed.flag || exit 1; "),
            retry={"max_attempts": 1},
            on_failure={
                "strategy": "fix",
                "fix": {"tool": "shell", "with": {"command": ["sh", "-c", fix]}},
                "max_fixes": 2,
            },
        ),
        sh("after", step(paths, run, "b", "after"), needs=["build"]),
    ]
    return Shaped(
        run,
        "fixloop",
        _plan(run, "fixloop", paths, [{"id": "b", "tasks": tasks}]),
        expect={"succeeded"},
    )


def wide(run: str, width: int, paths: Paths) -> Shaped:
    """A run of ``width`` workstreams, one task each."""
    wss = [
        {"id": f"w{i:03d}", "tasks": [sh("t", step(paths, run, f"w{i:03d}", "t"))]}
        for i in range(width)
    ]
    return Shaped(run, "wide", _plan(run, "wide", paths, wss), expect={"succeeded"})


def hang(run: str, paths: Paths) -> Shaped:
    """A tool that hangs: a shell call sleeping far past its 5 s timeout, tried once and
    then skipped, beside a workstream that goes on."""
    wss = [
        {
            "id": "h",
            "tasks": [
                sh("hang", "sleep 600", timeout="5s", retry={"max_attempts": 1}, on_failure="skip")
            ],
        },
        {"id": "o", "tasks": [sh("after", step(paths, run, "o", "after", seconds=6))]},
    ]
    return Shaped(run, "hang", _plan(run, "hang", paths, wss), expect={"succeeded"})


_BUILDERS = {
    "chain": _chain,
    "fanout": _fanout,
    "multirepo": _multirepo,
    "approval": _approval,
    "pause": _pause,
    "fixloop": _fixloop,
}
