"""A tiny calculator: the library of repository A."""


def add(a: int, b: int) -> int:
    return a + b
