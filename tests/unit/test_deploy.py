"""deploy/ and the docs name only metrics the worker serves, and parse as what they are."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from towline import profiles
from towline.worker import anomalies, dependencies, recorder
from towline.worker import metrics as worker_metrics
from towline.workflows import metrics as workflow_metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "towline-dashboard.json"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _families() -> dict[str, str]:
    """Every towline metric family the worker serves, by name, with its type."""
    # Importing them registers towline's metrics and collectors.
    assert None not in (
        worker_metrics.TOOL_CALLS,
        anomalies.SLOW_CALLS,
        dependencies.DEPENDENCY_UP,
        recorder.CACHE_LOOKUPS,
    )
    served = {f.name: f.type for f in REGISTRY.collect() if f.name.startswith("towline_")}
    served |= dict.fromkeys(
        [
            workflow_metrics.RUNS_STARTED,
            workflow_metrics.RUNS_FINISHED,
            workflow_metrics.TASKS_STARTED,
            workflow_metrics.TASKS_FINISHED,
            workflow_metrics.TASK_WAITS,
            workflow_metrics.BREAKER_OPENINGS,
        ],
        "counter",
    )
    served[workflow_metrics.TASK_DURATION] = "histogram"
    return served


def _sample_names() -> set[str]:
    return {name + suffix for name, kind in _families().items() for suffix in _SUFFIXES[kind]}


def _exprs(panels: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
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
    assert len(rules) == 9


def test_the_scrape_config_targets_the_worker_endpoint() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["worker:9464"]


def test_the_compose_stack_builds_the_worker_and_mounts_the_configs() -> None:
    stack = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert set(stack) >= {"postgresql", "temporal", "temporal-ui", "worker", "prometheus"}
    assert {"grafana", "jaeger", "codec-server"} <= set(stack)
    assert stack["worker"]["build"]["dockerfile"] == "deploy/Dockerfile"
    for service, mount in (
        ("prometheus", "./deploy/prometheus.yml"),
        ("grafana", "./deploy/grafana"),
    ):
        assert any(v.startswith(mount) for v in stack[service]["volumes"])
        assert (ROOT / mount).exists()
    assert "EXPOSE 9464" in (ROOT / "deploy" / "Dockerfile").read_text()


def _compose() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return services


def _published(service: dict[str, Any], inside: str) -> str:
    """The host port ``service`` publishes for its port ``inside``."""
    for mapping in service["ports"]:
        host, _, container = str(mapping).rpartition(":")
        if container == inside:
            return host
    raise AssertionError(f"port {inside} is not published: {service['ports']}")


def test_the_worker_and_codec_server_use_the_profile_file_they_mount() -> None:
    stack = _compose()
    for name in ("worker", "codec-server"):
        env = stack[name]["environment"]
        mounts = {
            target: source for source, target, *_ in (v.split(":") for v in stack[name]["volumes"])
        }
        source = mounts[env["TOWLINE_CONFIG"]]
        config = profiles.load_file(ROOT / source)  # the file checks as towline checks it
        profile = config.profiles[env["TOWLINE_PROFILE"]]
        assert profile.address is not None
        host, _, port = profile.address.partition(":")
        assert host in stack, f"{profile.address}: no such service"
        assert _published(stack[host], port)
    compose = config.profiles["compose"]
    assert compose.retention is not None
    assert compose.retention.daily_at is not None
    assert compose.api_key_file is None  # secrets never in the file


def test_the_ui_calls_the_codec_server_that_allows_its_origin() -> None:
    stack = _compose()
    ui = f"http://localhost:{_published(stack['temporal-ui'], '8080')}"
    codec = stack["codec-server"]["entrypoint"]
    assert codec[:2] == ["towline", "codec-server"]
    assert codec[codec.index("--allow-origin") + 1] == ui
    port = codec[codec.index("--port") + 1]
    endpoint = stack["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"]
    assert endpoint == f"http://localhost:{_published(stack['codec-server'], port)}"


def test_deploy_holds_only_what_is_used() -> None:
    users = "\n".join(
        (ROOT / f).read_text()
        for f in ("docker-compose.yml", "docs/operations.md", "deploy/Dockerfile")
    )
    for path in (ROOT / "deploy").rglob("*"):
        if path.is_dir():
            continue
        rel = path.relative_to(ROOT).as_posix()
        used = rel in users or any(
            rel.startswith(str(parent.relative_to(ROOT).as_posix()) + "/")
            and f"./{parent.relative_to(ROOT).as_posix()}:" in users
            for parent in path.parents
            if parent != ROOT and ROOT in parent.parents
        )
        assert used, f"{rel} is used by nothing (docker-compose.yml, docs, Dockerfile)"


def _unit() -> configparser.RawConfigParser:
    unit = configparser.RawConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((ROOT / "deploy" / "towline-worker.service").read_text())
    return unit


def test_the_systemd_unit_runs_as_a_dedicated_user_in_a_hardened_sandbox() -> None:
    service = _unit()["Service"]
    assert service["User"] == "towline"
    assert service["StateDirectory"] == "towline"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service.get(key) == value, key
    assert "TOWLINE_CONFIG=/etc/towline/towline.toml" in service["Environment"]


def test_systemd_accepts_the_unit_without_a_warning(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here: the unit is checked by parsing only")
    text = (ROOT / "deploy" / "towline-worker.service").read_text()
    # The unit's binary is not installed here; systemd checks that it exists.
    unit = tmp_path / "towline-worker.service"
    unit.write_text(text.replace("/opt/towline/.venv/bin/towline worker", "/bin/true"))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr
