"""Retention: how long a finished run's things are kept, and ``towline gc`` that enforces it.

- :mod:`towline.retention.policy`: the settings (per profile) and the pure decision of
  what may go.
- :mod:`towline.retention.holdings`: where a run's things are (workspaces, artifacts,
  history rows, cache entries), each behind one small interface: list the runs that have
  things, remove a run's things, say how much room they take.
- :mod:`towline.retention.collect`: ``towline gc``: asks Temporal about each run, then
  removes what the policy allows.
"""
