"""``towline worker``, exactly as users run it, plus the benchmark's body-start marks.

The command line after ``--marks FILE`` goes to ``towline worker`` unchanged. The only
addition is :class:`bench.marks.FirstBodyMarks`, attached to every client the process
connects (a client interceptor that is also a worker interceptor reaches the worker), so
towline's own code and options are what is measured:

    python -m bench.towline_worker --marks marks.txt --address 127.0.0.1:7233 --task-queue q
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from temporalio import client as temporal_client

from bench.marks import FirstBodyMarks


class _ClientMarks(FirstBodyMarks, temporal_client.Interceptor):
    """The marks interceptor, in the form a client accepts."""


def _attach(marks: Path) -> None:
    connect = temporal_client.Client.connect

    async def connect_with_marks(*args: Any, **kwargs: Any) -> temporal_client.Client:
        kwargs["interceptors"] = [*kwargs.get("interceptors", ()), _ClientMarks(marks)]
        return await connect(*args, **kwargs)

    temporal_client.Client.connect = connect_with_marks  # type: ignore[method-assign]


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) < 2 or argv[0] != "--marks":
        sys.exit("usage: python -m bench.towline_worker --marks FILE [towline worker options]")
    _attach(Path(argv[1]))
    from towline.starter.cli import run_cli

    code = run_cli(["worker", *argv[2:]])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
