"""Every worker a towline worker process runs, and the replayer, get towline's plugin."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from towline.worker.anomalies import AnomalyInterceptor
from towline.worker.converter import DATA_CONVERTER
from towline.worker.interceptors import TowlineInterceptor
from towline.worker.main import build_workers
from towline.worker.plugin import PASSTHROUGH, TowlinePlugin, workflow_classes
from towline.worker.recorder import HistoryInterceptor


def _interceptor_types(worker: Worker) -> list[type]:
    return [type(i) for i in worker.config(active_config=True).get("interceptors", [])]


async def test_only_the_shared_queue_runs_workflows_and_every_worker_records_tool_calls(
    client: Client,
) -> None:
    main, holder, *tool_queues = build_workers(client, "plugin-q", holder_queue="plugin-q/me")

    assert list(main.config(active_config=True).get("workflows", [])) == workflow_classes()
    assert tool_queues, "the tools with a queue of their own (llm) get workers too"
    for worker in (main, holder, *tool_queues):
        assert _interceptor_types(worker) == [
            TowlineInterceptor,
            HistoryInterceptor,
            AnomalyInterceptor,
        ]
    for worker in (holder, *tool_queues):
        assert not worker.config(active_config=True).get("workflows")
    assert isinstance(
        main.config(active_config=True).get("workflow_runner"), UnsandboxedWorkflowRunner
    )


async def test_a_sandboxed_worker_passes_towlines_pure_modules_through(client: Client) -> None:
    (main, *_) = build_workers(client, "plugin-sandboxed", sandboxed=True)

    runner = main.config(active_config=True).get("workflow_runner")
    assert isinstance(runner, SandboxedWorkflowRunner)
    assert set(PASSTHROUGH) <= runner.restrictions.passthrough_modules


def test_the_replayer_gets_the_workers_converter_workflows_and_sandbox() -> None:
    config = Replayer(workflows=[], plugins=[TowlinePlugin()]).config(active_config=True)

    assert config.get("data_converter") is DATA_CONVERTER
    assert list(config.get("workflows", [])) == workflow_classes()
    runner = config.get("workflow_runner")
    assert isinstance(runner, SandboxedWorkflowRunner)
    assert set(PASSTHROUGH) <= runner.restrictions.passthrough_modules
