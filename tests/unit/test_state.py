"""The small pure helpers of towline.state."""

from __future__ import annotations

from towline.state import FAIRNESS_KEY_BYTES, fairness_key


def test_a_short_run_id_is_its_own_fairness_key() -> None:
    assert fairness_key("deps-bump-20261129-ab12cd") == "deps-bump-20261129-ab12cd"


def test_long_run_ids_get_distinct_keys_within_temporals_limit() -> None:
    a = "a-run-whose-id-is-longer-than-a-terminal-is-wide-" + "x" * 40 + "-1"
    b = "a-run-whose-id-is-longer-than-a-terminal-is-wide-" + "x" * 40 + "-2"
    ka, kb = fairness_key(a), fairness_key(b)
    assert ka != kb
    assert len(ka.encode()) <= FAIRNESS_KEY_BYTES
    assert len(kb.encode()) <= FAIRNESS_KEY_BYTES
    assert ka.startswith("a-run-whose-id")
    assert fairness_key(a) == ka  # the same run always gets the same key


def test_multibyte_ids_are_cut_on_a_character_boundary() -> None:
    key = fairness_key("ü" * 100)
    assert len(key.encode()) <= FAIRNESS_KEY_BYTES
    key.encode().decode()  # valid text
