"""What the soak found, from what it recorded: soak/results/latest.{json,md}."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from soak.harness import FaultRec, RunRec, Soak


@dataclass(frozen=True)
class Line:
    """One ledger line: a task's script ran to its end."""

    run: str
    ws: str
    task: str
    worker: str
    start: float
    end: float


def read_ledger(text: str) -> list[Line]:
    out = []
    for raw in text.splitlines():
        parts = raw.split()
        if len(parts) != 6:
            continue
        try:
            out.append(
                Line(parts[0], parts[1], parts[2], parts[3], float(parts[4]), float(parts[5]))
            )
        except ValueError:
            continue
    return sorted(out, key=lambda line: line.end)


def cause_of(first: Line, again: Line, faults: list[FaultRec], t0: float) -> str | None:
    """The fault that explains a script ran to its end twice (at-least-once): its worker
    killed or stopped, or the server killed, after the first end and before the rerun."""
    for f in faults:
        kind = f.fault.kind
        until = f.undone_at or again.start
        if not (f.at <= again.start and until >= first.end - 1.0):
            continue
        if kind in ("worker_kill", "worker_stop") and f.target == first.worker:
            return (
                f"{kind} of {f.target} at {f.at - t0:.1f}s, {f.at - first.end:+.1f}s from its end"
            )
        if kind == "server_kill":
            return f"server_kill at {f.at - t0:.1f}s, {f.at - first.end:+.1f}s from its end"
        if kind == "store_full":
            return (
                f"store_full from {f.at - t0:.1f}s: the script ended, saving the workspace to the "
                "store failed (no space), the call failed and was retried"
            )
    return None


def during(r: RunRec, faults: list[FaultRec], t0: float) -> list[str]:
    """The faults in force at some point while run ``r`` went on."""
    end = r.ended_at or float("inf")
    return [
        f"{f.fault.kind} {f.target}".strip() + f" at {f.at - t0:.1f}s"
        for f in faults
        if f.at <= end and (f.undone_at or f.at) >= r.started_at
    ]


def summarize(soak: Soak) -> dict[str, Any]:
    t0 = soak.load_started
    ledger = read_ledger(soak.paths.ledger.read_text() if soak.paths.ledger.exists() else "")
    runs = soak.runs.values()

    by_status: Counter[str] = Counter()
    by_shape: dict[str, Counter[str]] = defaultdict(Counter)
    unexpected = []
    for r in runs:
        status = r.status or (
            "waiting for a person" if (r.note or "").startswith("waiting") else "open"
        )
        by_status[status] += 1
        by_shape[r.shaped.shape][status] += 1
        if r.status is not None and r.status not in r.shaped.expect:
            unexpected.append(
                {
                    "run": r.shaped.run_id,
                    "status": r.status,
                    "expected": sorted(r.shaped.expect),
                    "reason": r.reason,
                    "faults_meanwhile": during(r, soak.faults, t0),
                }
            )
    lost = [
        {"run": r.shaped.run_id, "why": r.note}
        for r in runs
        if (r.note or "").startswith(("lost", "never"))
    ]
    stuck = [
        {"run": r.shaped.run_id, "why": r.note} for r in runs if (r.note or "").startswith("stuck")
    ]
    waiting = [
        {"run": r.shaped.run_id, "why": r.note}
        for r in runs
        if (r.note or "").startswith("waiting")
    ]

    # Scripts that ran to their end more than once.
    lines: dict[tuple[str, str, str], list[Line]] = defaultdict(list)
    for line in ledger:
        lines[(line.run, line.ws, line.task)].append(line)
    at_least_once = []
    reruns = []
    for (rid, wid, tid), seen in sorted(lines.items()):
        for first, again in itertools.pairwise(seen):
            case = {
                "run": rid,
                "task": f"{wid}.{tid}",
                "first": [first.worker, round(first.end - t0, 1)],
                "again": [again.worker, round(again.start - t0, 1)],
            }
            cause = cause_of(first, again, soak.faults, t0)
            if cause:
                at_least_once.append({**case, "cause": cause})
            else:
                reruns.append(case)
    # Tasks that say they succeeded, yet whose script never reached its end.
    phantom = []
    for r in runs:
        for ref, status in r.tasks.items():
            wid, tid = ref.split(".", 1)
            if (
                status == "succeeded"
                and r.shaped.shape != "hang"
                and (r.shaped.run_id, wid, tid) not in lines
            ):
                if tid in ("apply",):  # patch.apply writes no ledger line
                    continue
                phantom.append({"run": r.shaped.run_id, "task": ref})

    # From each fault to the next task (one that started after it) completing anywhere.
    recovery: dict[str, list[float]] = defaultdict(list)
    faults_out = []
    # A script's last line, of a task that succeeded: its call succeeded (an earlier line
    # may be a call that failed after its script, e.g. saving to a full store).
    done = [
        seen[-1]
        for (rid, wid, tid), seen in lines.items()
        if rid in soak.runs and soak.runs[rid].tasks.get(f"{wid}.{tid}") == "succeeded"
    ]
    for f in soak.faults:
        nxt = min((line.end for line in done if line.start >= f.at), default=None)
        gap = round(nxt - f.at, 2) if nxt is not None else None
        if gap is not None and not f.detail.startswith(("skipped", "could not")):
            recovery[f.fault.kind].append(gap)
        faults_out.append(
            {
                "kind": f.fault.kind,
                "at": round(f.at - t0, 1),
                "target": f.target,
                "detail": f.detail,
                "undone_at": round(f.undone_at - t0, 1) if f.undone_at else None,
                "next_task_done_s": gap,
            }
        )
    rec_summary = {
        kind: {"n": len(v), "median_s": round(statistics.median(v), 2), "worst_s": round(max(v), 2)}
        for kind, v in sorted(recovery.items())
    }

    rss: dict[str, list[list[float]]] = defaultdict(list)
    for at, sample in soak.rss:
        for name, kb in sample.items():
            if kb is not None:
                rss[name].append([round(at - t0, 1), round(kb / 1024, 1)])
    rss_summary = {
        name: {"first_mib": v[0][1], "max_mib": max(x[1] for x in v), "last_mib": v[-1][1]}
        for name, v in sorted(rss.items())
        if v
    }
    keys = [k for _, k in soak.webhook.received]
    return {
        "seed": soak.opts.seed,
        "load_minutes": soak.opts.minutes,
        "drain_s": round(soak.drain_ended - soak.load_ended, 1),
        "workers": len(soak.cluster.workers),
        "runs": {
            "started": len(soak.runs),
            "by_status": dict(sorted(by_status.items())),
            "by_shape": {k: dict(sorted(v.items())) for k, v in sorted(by_shape.items())},
            "unexpected_status": unexpected,
            "lost": lost,
            "stuck": stuck,
            "waiting_for_a_person": waiting,
        },
        "tasks_completed": len(ledger),
        "succeeded_workspace_tasks_ran_again": reruns,
        "at_least_once": at_least_once,
        "succeeded_without_running": phantom,
        "faults": faults_out,
        "recovery": rec_summary,
        "rss_mib": rss_summary,
        "rss_series": dict(rss),
        "largest_history": soak.largest,
        "webhook": {
            "deliveries": len(keys),
            "distinct": len(set(keys)),
            "repeats": len(keys) - len(set(keys)),
        },
        "leftover_processes": [list(p) for p in soak.leftovers],
    }


def markdown(s: dict[str, Any]) -> str:
    r = s["runs"]
    again = len(s["succeeded_workspace_tasks_ran_again"])
    phantom = len(s["succeeded_without_running"])
    lh = s["largest_history"]
    w = s["webhook"]
    out = [
        "# Soak",
        "",
        f"Seed {s['seed']} (`python -m soak --seed {s['seed']}` replays its faults"
        f"{' at commit ' + s['commit'] if s.get('commit') else ''}), "
        f"{s['load_minutes']:g} minutes of load, {s['workers']} workers, "
        f"then a drain of {s['drain_s']:.0f}s.",
        "",
        "## Verdict",
        "",
        "| check | count |",
        "|---|---|",
        f"| runs lost | {len(r['lost'])} |",
        f"| runs stuck | {len(r['stuck'])} |",
        f"| runs waiting for a person at the end | {len(r['waiting_for_a_person'])} |",
        f"| succeeded workspace tasks that ran again | {again} |",
        f"| tasks succeeded without their script reaching its end | {phantom} |",
        f"| at-least-once re-runs explained by a fault | {len(s['at_least_once'])} |",
        f"| runs ending otherwise than their shape expects | {len(r['unexpected_status'])} |",
        "",
        "## Runs",
        "",
        f"{r['started']} started, {s['tasks_completed']} task scripts ran to their end.",
        "",
        "| shape | " + " | ".join(sorted(r["by_status"])) + " |",
        "|---|" + "---|" * len(r["by_status"]),
    ]
    for shape, counts in r["by_shape"].items():
        out.append(
            f"| {shape} | "
            + " | ".join(str(counts.get(k, 0)) for k in sorted(r["by_status"]))
            + " |"
        )
    out.append("| all | " + " | ".join(str(v) for _, v in sorted(r["by_status"].items())) + " |")
    for title, rows in (
        ("Lost", r["lost"]),
        ("Stuck", r["stuck"]),
        ("Waiting for a person", r["waiting_for_a_person"]),
    ):
        if rows:
            out += ["", f"### {title}", ""] + [f"- {row}" for row in rows]
    if r["unexpected_status"]:
        out += ["", "### Runs that ended otherwise than their shape expects", ""]
        out += ["| faults in force meanwhile | runs |", "|---|---|"]
        seen = Counter(
            ", ".join(sorted({f.split(" at ")[0] for f in u["faults_meanwhile"]})) or "none"
            for u in r["unexpected_status"]
        )
        out += [f"| {k} | {n} |" for k, n in sorted(seen.items())]
    out += ["", "## Re-runs", ""]
    if s["succeeded_workspace_tasks_ran_again"]:
        out += [f"- UNEXPLAINED: {c}" for c in s["succeeded_workspace_tasks_ran_again"]]
    if s["succeeded_without_running"]:
        out += [f"- SUCCEEDED WITHOUT RUNNING: {c}" for c in s["succeeded_without_running"]]
    if s["at_least_once"]:
        kinds = Counter(c["cause"].split()[0] for c in s["at_least_once"])
        out += [
            "At-least-once: a script ran to its end, but its call was not recorded as "
            "succeeded, and ran again (by the fault in force; every case in latest.json):",
            "",
        ]
        out += [f"- {kind}: {n}" for kind, n in sorted(kinds.items())]
        out += ["", "The first ten:", ""]
        out += [f"- {c['run']} {c['task']}: {c['cause']}" for c in s["at_least_once"][:10]]
    if not (
        s["succeeded_workspace_tasks_ran_again"]
        or s["at_least_once"]
        or s["succeeded_without_running"]
    ):
        out.append("None.")
    out += [
        "",
        "## Faults: from each to the next task (begun after it) succeeding anywhere",
        "",
        "| fault | n | median s | worst s |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {k} | {v['n']} | {v['median_s']} | {v['worst_s']} |" for k, v in s["recovery"].items()
    ]
    out += ["", "| at s | fault | target | detail | next task done s |", "|---|---|---|---|---|"]
    out += [
        f"| {f['at']} | {f['kind']} | {f['target']} | {f['detail']} | {f['next_task_done_s']} |"
        for f in s["faults"]
    ]
    out += ["", "## Memory (RSS, MiB)", "", "| process | first | max | last |", "|---|---|---|---|"]
    out += [
        f"| {k} | {v['first_mib']} | {v['max_mib']} | {v['last_mib']} |"
        for k, v in s["rss_mib"].items()
    ]
    out += [
        "",
        "(A killed worker restarts as a new process: its row follows the name, not the pid.)",
        "",
        "## Other",
        "",
        f"- Largest history: {lh.get('events')} events ({lh.get('workflow_id')}), "
        f"of {lh.get('workflows')} workflows.",
        f"- Webhook: {w['deliveries']} deliveries, {w['distinct']} distinct, "
        f"{w['repeats']} repeats (same idempotency key).",
        f"- Tool processes left running at the end (killed by pid): "
        f"{len(s['leftover_processes'])}.",
        "",
    ]
    return "\n".join(out)
