"""``make bench-scale``: ``wide_5000``, one run across 5,000 repositories (minutes).

    python -m bench.scale                    # writes bench/results/scale.{json,md}
    python -m bench.scale --workstreams 200  # a smaller size; prints only

The same server, workers and sides as ``make bench`` (see :mod:`bench.wide`), one
repetition of each side: the towline run is timed with ``towline status`` called every
10 seconds while it is in flight (the API, then the CLI), so its time includes
answering them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench import plans, scenarios, wide
from bench.__main__ import RESULTS, _env


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="towline-bench-scale-") as tmp:
        folder = Path(tmp)
        async with scenarios.started(folder) as b:
            env = await _env(b.towline)
            _say("warm-up")
            await scenarios.towline_plan(b, plans.wide(20))
            await scenarios.bare_wide(b, 20, wide.STEPS, 10)
            _say(f"wide: {args.workstreams} workstreams of {wide.STEPS} chained tasks")
            w = await wide.measure(b, args.workstreams, 1, every=args.every, probe_alone=False)
    load = (load_before, os.getloadavg()[0])
    seconds = time.perf_counter() - started
    md = "\n".join(wide.markdown(w)) + "\n"
    md += (
        f"- machine: {env['cpu_count']} CPUs, load average {load[0]:.2f} before and"
        f" {load[1]:.2f} after (other work shares these cores); python {env['python']},"
        f" temporalio {env['temporalio']}, server {env['server_version']}, {env['date']}\n"
        f"- the whole benchmark took {seconds:.0f} s\n"
    )
    print(md)
    out = args.out or (RESULTS if args.workstreams == 5000 else None)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        doc = {"scenarios": {w.name: wide.document(w)}, "env": env}
        (out / "scale.json").write_text(json.dumps(doc, indent=2) + "\n")
        (out / "scale.md").write_text(md)
        _say(f"wrote {out / 'scale.json'} and {out / 'scale.md'}")
    return 0


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    p.add_argument("--workstreams", type=int, default=5000)
    p.add_argument("--every", type=float, default=10.0, help="seconds between status calls")
    p.add_argument("--out", type=Path, help="folder for scale.json and scale.md")
    args = p.parse_args()
    code = asyncio.run(_main(args))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # temporalio may crash at interpreter exit (sdk-python#300)


if __name__ == "__main__":
    main()
