"""Secrets are redacted from a command's output however it comes in chunks, and only a
tail that could begin a secret is held back (so stdout and stderr keep their order)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from towline.activities.process import _Redactor

SECRETS = ["hunter2-long-secret", "sk-0123456789", "hunter2"]


def _through(chunks: list[bytes], secrets: list[str] = SECRETS) -> tuple[bytes, list[bytes]]:
    redactor = _Redactor(secrets)
    parts = [redactor.feed(c) for c in chunks]
    parts.append(redactor.flush())
    return b"".join(parts), parts


@given(
    pieces=st.lists(
        st.one_of(st.sampled_from([s.encode() for s in SECRETS]), st.binary(max_size=12)),
        max_size=12,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
def test_any_chunking_gives_the_whole_output_with_no_secret_in_it(
    pieces: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(pieces)
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    got, _ = _through(chunks)
    whole, _ = _through([data])
    assert got == whole
    for secret in SECRETS:
        assert secret.encode() not in got


def test_a_secret_split_across_chunks_is_redacted() -> None:
    got, _ = _through([b"token=sk-01234", b"56789 done\n"])
    assert got == b"token=*** done\n"


def test_output_that_cannot_begin_a_secret_passes_at_once() -> None:
    _, parts = _through([b"line one\n", b"line two\n"])
    assert parts[:2] == [b"line one\n", b"line two\n"]


def test_only_the_tail_that_could_begin_a_secret_waits() -> None:
    _, parts = _through([b"progress: hunt", b"ing done\n"])
    assert parts == [b"progress: ", b"hunting done\n", b""]


def test_without_secrets_nothing_waits() -> None:
    _, parts = _through([b"sk-0123"], secrets=[])
    assert parts == [b"sk-0123", b""]
