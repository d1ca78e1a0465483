"""deploy/ and the docs name only metrics the worker serves, and parse as what they are."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from towline.worker import metrics as worker_metrics
from towline.workflows import metrics as workflow_metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "towline-dashboard.json"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _families() -> dict[str, str]:
    """Every towline metric family the worker serves, by name, with its type."""
    assert worker_metrics.TOOL_CALLS is not None  # registers towline's collectors
    served = {f.name: f.type for f in REGISTRY.collect() if f.name.startswith("towline_")}
    served |= dict.fromkeys(
        [
            workflow_metrics.RUNS_STARTED,
            workflow_metrics.RUNS_FINISHED,
            workflow_metrics.TASKS_STARTED,
            workflow_metrics.TASKS_FINISHED,
            workflow_metrics.TASK_WAITS,
        ],
        "counter",
    )
    served[workflow_metrics.TASK_DURATION] = "histogram"
    return served


def _sample_names() -> set[str]:
    return {name + suffix for name, kind in _families().items() for suffix in _SUFFIXES[kind]}


def _exprs(panels: list[dict]) -> list[str]:
    out = []
    for p in panels:
        out += [t["expr"] for t in p.get("targets", [])]
        out += _exprs(p.get("panels", []))
    return out


def test_the_dashboard_queries_only_metrics_the_worker_serves() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _exprs(dashboard["panels"])
    used = {m for e in exprs for m in re.findall(r"\btowline_\w+", e)}
    assert used <= _sample_names(), used - _sample_names()
    # and it shows every one of them
    assert {re.sub(r"_(total|bucket|sum|count)$", "", m) for m in used} >= {
        n for n in _families() if n != workflow_metrics.TASK_WAITS
    }


def test_every_metric_is_documented() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    for name, kind in _families().items():
        shown = name + ("_total" if kind == "counter" else "")
        assert f"`{shown}`" in doc, f"{shown} is missing from docs/operations.md"


def test_the_alert_rules_use_only_metrics_the_worker_serves_and_are_documented() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())["groups"][0]["rules"]
    doc = (ROOT / "docs" / "operations.md").read_text()
    for rule in rules:
        used = set(re.findall(r"\btowline_\w+", rule["expr"]))
        assert used <= _sample_names(), (rule["alert"], used - _sample_names())
        assert f"`{rule['alert']}`" in doc, f"{rule['alert']} is missing from docs/operations.md"
        assert rule["labels"]["severity"] in ("info", "warning", "critical")
    assert len(rules) == 5


def test_the_scrape_config_targets_the_worker_endpoint() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["worker:9464"]


def test_the_compose_stack_builds_the_worker_and_mounts_the_configs() -> None:
    stack = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert set(stack) >= {"postgresql", "temporal", "temporal-ui", "worker", "prometheus"}
    assert {"grafana", "jaeger"} <= set(stack)
    assert stack["worker"]["build"]["dockerfile"] == "deploy/Dockerfile"
    for service, mount in (
        ("prometheus", "./deploy/prometheus.yml"),
        ("grafana", "./deploy/grafana"),
    ):
        assert any(v.startswith(mount) for v in stack[service]["volumes"])
        assert (ROOT / mount).exists()
    assert "EXPOSE 9464" in (ROOT / "deploy" / "Dockerfile").read_text()
