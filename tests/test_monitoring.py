"""examples/monitoring: the alert rules pass ``promtool check rules`` and their own ``promtool test rules``,
and every expression of the rules and of the Grafana dashboard parses and names metrics that exist."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from segment_exposure import InMemorySegmentClient, SegmentExposureTrackingProvider, register
from segment_exposure.metrics.webhook import PrometheusRecorder

from .prerequisites import require_binary

#: Starts processes, servers, browsers, npm or Prometheus: outside the fast inner loop.
pytestmark = pytest.mark.slow

MONITORING = Path(__file__).resolve().parent.parent / "examples" / "monitoring"
METRIC_NAME = re.compile(r"\bsegment_exposure_[a-z_]*[a-z]\b")


def require(binary: str) -> str:
    """The path of a binary of Debian's prometheus package, installed on first need
    (tests/prerequisites.py); unavailable, the test skips, or fails under CI."""
    return require_binary(binary)


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def exposed_names() -> set[str]:
    """Every sample name the provider collector and the webhook recorder really expose."""
    registry = CollectorRegistry()
    provider = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
    register(provider, registry)
    recorder = PrometheusRecorder(registry)
    recorder.amplitude("200")
    recorder.response(200, 0.1)
    text = generate_latest(registry).decode()
    provider.shutdown(1)
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)
    return found


def test_alert_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 5 rules found" in done.stdout


def test_alert_rules_pass_their_unit_tests() -> None:
    done = promtool("test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_expression_names_metrics_that_exist() -> None:
    names = exposed_names()
    expressions = rule_expressions() + dashboard_expressions()
    assert len(dashboard_expressions()) >= 12
    for expr in expressions:
        if expr.startswith("ALERTS{"):  # the dashboard's annotations: Prometheus's series of our alerts
            assert 'alertname=~"SegmentExposure.*"' in expr
            continue
        used = set(METRIC_NAME.findall(expr))
        assert used, f"no segment-exposure metric in {expr!r}"
        assert used <= names, f"{expr!r} names metrics nobody exposes: {sorted(used - names)}"
    joined = " ".join(rule_expressions())
    for name in (
        "segment_exposure_provider_dropped_total",
        "segment_exposure_destination_events_total",
        "segment_exposure_amplitude_requests_total",
        "segment_exposure_provider_queue_size",
    ):
        assert name in joined


def test_every_dashboard_expression_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel's query (Grafana's variables replaced) as a recording rule."""
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": expr.replace("$__rate_interval", "5m").replace("$job", ".*"),
        }
        for i, expr in enumerate(dashboard_expressions())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = promtool("check", "rules", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
