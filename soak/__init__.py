"""``make soak``: hours (by default 20 minutes) of mixed runs under random faults.

One dev server, three workers (each in a mount namespace of its own, one shared store),
runs of several shapes started continuously, and faults from a seeded generator. The
report goes to soak/results/latest.{json,md}; docs/operations.md ("Soak") says what it
checks.
"""
