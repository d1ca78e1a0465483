"""``make soak``: mixed runs under random faults; writes soak/results/latest.{json,md}.

    python -m soak                    # 20 minutes of load (SOAK_MINUTES sets another)
    python -m soak --minutes 3        # a quick check
    python -m soak --seed 1234        # replay a fault schedule

Exit 0 when no run was lost or stuck and no succeeded workspace task ran again, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from soak.harness import Options, run
from soak.report import markdown, summarize

RESULTS = Path(__file__).parent / "results"


def _commit() -> str | None:
    """The checkout's commit: a seed replays its faults with the code that drew them."""
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m soak", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "20")))
    p.add_argument("--seed", type=int, default=None, help="replay this fault schedule")
    p.add_argument(
        "--drain", type=float, default=None, help="seconds for runs to end after the load"
    )
    p.add_argument("--wide", type=int, default=200, help="workstreams of a wide run (0: none)")
    p.add_argument("--out", type=Path, default=RESULTS, help="where latest.{json,md} go")
    p.add_argument(
        "--keep", action="store_true", help="keep the soak's folder (logs, ledger, database)"
    )
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("python -m soak needs root: it mounts a tmpfs and runs workers under unshare -m")
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    drain = args.drain if args.drain is not None else max(120.0, args.minutes * 15)
    print(
        f"soak seed {seed} (replay: python -m soak --seed {seed} --minutes {args.minutes:g})",
        flush=True,
    )
    root = Path(tempfile.mkdtemp(prefix="towline-soak-"))
    opts = Options(minutes=args.minutes, seed=seed, drain_s=drain, wide=args.wide)
    try:
        soak = asyncio.run(run(opts, root))
        summary = summarize(soak)
        summary["commit"] = _commit()
        summary["events"] = soak.events
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "latest.md").write_text(markdown(summary))
    print(markdown(summary))
    bad = (
        summary["runs"]["lost"]
        or summary["runs"]["stuck"]
        or summary["succeeded_workspace_tasks_ran_again"]
        or summary["succeeded_without_running"]
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
