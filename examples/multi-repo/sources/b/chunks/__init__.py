"""Sequence helpers: the library of repository B."""


def first(seq):
    return seq[0] if seq else None
