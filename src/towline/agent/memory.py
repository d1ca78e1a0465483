"""Memory across runs: a failure's signature, and the closest past fixes to offer.

When a fix succeeds (the task it was for passes on its next try), towline records the
failure's signature with what fixed it (the agent's summary and diff) in the run
history. A later agent facing a failure gets the past fixes whose signatures are
closest to its own, in its first message.

A signature is a set of features read from the failure's text: the failing tests' ids,
the error types raised (``AssertionError``, ``TypeError`` ...) and the source files
named. Two signatures are compared by weighted Jaccard similarity: a shared test id
weighs :data:`WEIGHTS` ``test`` (3), a shared error type or file 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from towline.agent.choice import files_in, tests_in

WEIGHTS = {"test": 3.0, "error": 1.0, "file": 1.0}
MIN_SCORE = 0.3  # below this, a past fix is not offered
OFFERED = 3  # past fixes offered at most
DIFF_SHOWN = 3000  # characters of a past fix's diff put in the context

_ERROR = re.compile(r"\b([A-Z][A-Za-z0-9]*(?:Error|Exception|Failure))\b")


def signature(text: str) -> list[str]:
    """The failure's features, sorted: ``test:<id>``, ``error:<type>``, ``file:<path>``."""
    features = {f"test:{t}" for t in tests_in(text)}
    features |= {f"error:{e}" for e in _ERROR.findall(text)}
    features |= {f"file:{f}" for f in files_in(text)}
    return sorted(features)


def _weight(feature: str) -> float:
    return WEIGHTS.get(feature.split(":", 1)[0], 1.0)


def similarity(a: Iterable[str], b: Iterable[str]) -> float:
    """Weighted Jaccard similarity of two signatures, 0 (nothing shared) to 1."""
    sa, sb = set(a), set(b)
    union = sum(_weight(f) for f in sa | sb)
    if not union:
        return 0.0
    return sum(_weight(f) for f in sa & sb) / union


@dataclass(frozen=True)
class PastFix:
    run_id: str
    task: str  # workstream.task
    model: str
    signature: Sequence[str]
    summary: str
    diff: str


@dataclass(frozen=True)
class Match:
    fix: PastFix
    score: float


def closest(
    sig: Sequence[str], past: Iterable[PastFix], *, limit: int = OFFERED, floor: float = MIN_SCORE
) -> list[Match]:
    """The past fixes most like ``sig``, best first (newest first among equals)."""
    scored = [Match(p, similarity(sig, p.signature)) for p in past]
    kept = [m for m in reversed(scored) if m.score >= floor]  # newest first
    kept.sort(key=lambda m: m.score, reverse=True)  # stable: newest first among equals
    return kept[:limit]


def context_note(matches: Sequence[Match]) -> str:
    """How the past fixes read in the agent's first message."""
    parts = ["Past fixes of similar failures (from earlier runs; they may or may not apply):"]
    for i, m in enumerate(matches, 1):
        diff = m.fix.diff
        if len(diff) > DIFF_SHOWN:
            diff = diff[:DIFF_SHOWN] + "\n... (diff cut)"
        parts.append(
            f"\n{i}. run {m.fix.run_id}, task {m.fix.task} (similarity {m.score:.2f}):\n"
            f"summary: {m.fix.summary}\ndiff:\n{diff}"
        )
    return "\n".join(parts)
