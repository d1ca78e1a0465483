"""The plan: its models (spec), loading, validation, expressions and the task DAG.

Pure code with no I/O but reading the plan file (:mod:`.load`): the starter, the
workflows and the activities all import it, and it imports none of them.
"""
