"""What every towline worker and replayer is given: one Temporal plugin.

:class:`TowlinePlugin` bundles what must be the same wherever towline's workflows run or
replay: the data converter, the worker interceptors (metrics, spans and log ids for each
tool call; the run history and ``cache:``; the anomaly watch), the workflows, and the modules passed
through the sandbox. The worker (:mod:`towline.worker.main`), the replay test, the
upgrade test and the benchmarks (which run ``towline worker``) all use it, so a workflow
or an interceptor added here reaches each of them:

    Worker(client, task_queue="towline", activities=[...], plugins=[TowlinePlugin()])
    Replayer(workflows=[], plugins=[TowlinePlugin()])

It is given to workers, never to the client: a client's plugins reach every worker
built on it, and the workers that serve only activities (a workspace holder's queue, a
tool's own queue) get ``TowlinePlugin(workflows=())``. The client gets the same
converter from :func:`towline.worker.client.connect`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from temporalio.converter import DataConverter
from temporalio.plugin import SimplePlugin
from temporalio.worker import WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from towline import history
from towline.activities import tools
from towline.activities.base import Tool
from towline.worker.anomalies import AnomalyInterceptor
from towline.worker.converter import data_converter
from towline.worker.interceptors import TowlineInterceptor
from towline.worker.recorder import HistoryInterceptor
from towline.workflows.agent import AgentWorkflow
from towline.workflows.breaker import BreakerWorkflow
from towline.workflows.gc import GcWorkflow
from towline.workflows.locks import LockWorkflow
from towline.workflows.rollback import RollbackWorkflow
from towline.workflows.run import RunWorkflow
from towline.workflows.workstream import WorkstreamWorkflow

# Pure modules the workflows import: passed through the sandbox, so each workflow run
# does not import them afresh.
PASSTHROUGH = ("pydantic", "pydantic_core", "annotated_types", "towline", "opentelemetry")


def workflow_classes(*, workstream: type = WorkstreamWorkflow) -> list[type]:
    """towline's workflows (the upgrade test swaps in another version of the workstream's)."""
    return [
        RunWorkflow,
        workstream,
        RollbackWorkflow,
        BreakerWorkflow,
        LockWorkflow,
        GcWorkflow,
        AgentWorkflow,
    ]


class TowlinePlugin(SimplePlugin):
    """towline's converter, interceptors, workflows and sandbox passthrough.

    ``workflows``: the workflows to run (default :func:`workflow_classes`; ``()`` for a
    worker of activities only). ``registry``: the tools whose calls the history records
    and caches (default the real ones; tests give scripted tools under the real names).
    ``converter``: for the replayer (default :func:`~towline.worker.converter.data_converter`);
    a worker uses its client's.

    Each worker gets a plugin of its own: its interceptors hold the history store's
    connection, one per worker as before.
    """

    def __init__(
        self,
        *,
        workflows: Sequence[type] | None = None,
        registry: Mapping[str, Tool] | None = None,
        converter: DataConverter | None = None,
    ) -> None:
        registry = tools.TOOLS if registry is None else registry
        store = history.open_store()
        super().__init__(
            "towline.TowlinePlugin",
            # Read when a replayer asks (a worker's converter is its client's).
            data_converter=lambda _: converter or data_converter(),
            interceptors=[
                # Metrics, spans and log ids for every tool call (cache hits too, so
                # outermost); spans for runs and workstreams.
                TowlineInterceptor(),
                # Records each tool call in the run history and serves `cache:` hits.
                HistoryInterceptor(store, registry),
                # Slow calls and failure-rate jumps, as they happen (calls that ran only).
                AnomalyInterceptor(store, registry),
            ],
            workflows=list(workflow_classes() if workflows is None else workflows),
            workflow_runner=_pass_through,
        )


def _pass_through(runner: WorkflowRunner | None) -> WorkflowRunner:
    """A sandboxed runner lets towline's pure modules through; any other stays as it is."""
    if runner is None:
        runner = SandboxedWorkflowRunner()
    if isinstance(runner, SandboxedWorkflowRunner):
        return dataclasses.replace(
            runner, restrictions=runner.restrictions.with_passthrough_modules(*PASSTHROUGH)
        )
    return runner
