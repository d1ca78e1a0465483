"""The seeded fault schedule: which fault, when, on what, for how long.

A pure function of the seed and the load's length, so ``--seed`` replays the same
schedule (the moments the faults land in the runs still vary with the machine's load).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from soak.shapes import TOOL_HEARTBEAT_S

KINDS = (
    "worker_kill",  # SIGKILL a worker, restarted after `hold` seconds
    "server_kill",  # SIGKILL the dev server, restarted on the same database after `hold`
    "worker_stop",  # SIGSTOP a worker for `hold` s (past the heartbeat timeouts), then SIGCONT
    "tool_hang",  # a run whose shell call sleeps far past its timeout
    "store_full",  # the store's filesystem full for `hold` seconds
    "webhook_slow",  # the webhook receiver answers after 20 s, for `hold` seconds
    "webhook_dead",  # the webhook receiver does not listen, for `hold` seconds
)


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the load began
    kind: str
    target: str  # a worker's name, or "" when the fault has none
    hold: float  # seconds until it is undone (0: nothing to undo)


def schedule(
    seed: int, load_s: float, workers: list[str], gap: tuple[float, float] = (20.0, 45.0)
) -> list[Fault]:
    """Faults at random gaps through the load, every kind in turn from a shuffled deck
    (each kind comes once before any comes twice, never twice in a row: a fault does not
    overlap one of its own kind), none in its last 20 seconds."""
    rng = random.Random(seed)
    out: list[Fault] = []
    deck: list[str] = []
    t = rng.uniform(10.0, 20.0)
    while t < load_s - 20.0:
        if not deck:
            deck = list(KINDS)
            rng.shuffle(deck)
            if out and deck[-1] == out[-1].kind:  # never the same kind twice in a row
                deck[0], deck[-1] = deck[-1], deck[0]
        kind = deck.pop()
        target = rng.choice(workers) if kind.startswith("worker") else ""
        hold = {
            "worker_kill": rng.uniform(2.0, 20.0),
            "server_kill": rng.uniform(1.0, 5.0),
            "worker_stop": rng.uniform(TOOL_HEARTBEAT_S + 2.0, TOOL_HEARTBEAT_S + 10.0),
            "tool_hang": 0.0,
            "store_full": 60.0,
            "webhook_slow": 60.0,
            "webhook_dead": 60.0,
        }[kind]
        out.append(Fault(round(t, 2), kind, target, round(hold, 2)))
        t += rng.uniform(*gap)
    return out
