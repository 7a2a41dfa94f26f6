"""A real Prometheus (Debian's package) scrapes ``serve --metrics-port`` and a provider app, both under
gunicorn with 2 workers, while traffic and faults run. What it stored must equal what the emulators
counted, summed over the workers (one of them restarted midway), and an alert must fire during an
injected Amplitude outage. The shipped alert rules are used, with their ``for:`` durations set to 0s.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from segment_exposure import DROP_REASONS, AmplitudeEmulator, SegmentCollector
from segment_exposure.metrics.webhook import EVENT_OUTCOMES

from .amplitude_cases import segment_event
from .conftest import WRITE_KEY, wait_until
from .serve_process import ServeProcess
from .test_monitoring import MONITORING, require

#: Starts processes, servers, browsers, npm or Prometheus: outside the fast inner loop.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "amp-prometheus-key-4f3e2d1c0b"
WEBHOOK_LOG = re.compile(r"\[(\d+)\] \[INFO\] segment_exposure[\w.]*: webhook: \d+ events")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prometheus:
    """Debian's ``prometheus`` on a loopback port, with temporary storage and 1 s intervals."""

    def __init__(self, workdir: Path, targets: dict[str, str], rules: Path) -> None:
        binary = require("prometheus")
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log_file = workdir / "prometheus.log"
        with self.log_file.open("w") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not wait_until(self._ready, timeout=60, interval=0.1):
            self.stop()
            pytest.fail(f"prometheus did not become ready:\n{self.log()}")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            return True  # exited: reported by the caller
        try:
            return requests.get(self.url + "/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log(self) -> str:
        return self.log_file.read_text()[-4000:]

    def query(self, expr: str) -> dict[str, float]:
        """The instant vector of ``expr``: a label rendering of each series -> its value."""
        response = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=5)
        data = response.json()
        assert data["status"] == "success", data
        return {
            ",".join(f"{k}={v}" for k, v in sorted(r["metric"].items())): float(r["value"][1])
            for r in data["data"]["result"]
        }

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        return next(iter(result.values())) if result else None

    def firing(self) -> set[str]:
        alerts = requests.get(self.url + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def rules_without_waiting(workdir: Path) -> Path:
    """The shipped rules with every ``for:`` at 0s: a test cannot wait 15 minutes."""
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    path = workdir / "alerts.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


def webhook_batch(prefix: str, size: int) -> list[dict[str, Any]]:
    """``size`` events: exposures, one event that is not an exposure and one Amplitude must refuse."""
    batch = [segment_event(i, prefix) for i in range(size - 2)]
    batch.append(segment_event(size - 2, prefix, event="Page Viewed"))
    batch.append(segment_event(size - 1, prefix, userId="x", anonymousId=None))  # id too short
    return batch


class Traffic:
    """Sends webhook batches and provider requests, every event and user new; keeps what each answer said."""

    def __init__(self, webhook_url: str, app_url: str) -> None:
        self.webhook_url = webhook_url
        self.app_url = app_url
        self.statuses: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.tracked = 0
        self.app_pids: set[int] = set()
        self.sent = 0
        self._serial = itertools.count()

    def _post_batch(self, batch: list[dict[str, Any]]) -> None:
        response = requests.post(self.webhook_url + "/", data=json.dumps(batch), timeout=30)
        body = response.json()
        self.statuses[str(response.status_code)] += 1
        self.outcomes["delivered"] += body["delivered"]
        self.outcomes["not_exposure"] += body["ignored"]
        self.outcomes["rejected"] += len(body["rejected"])
        self.outcomes["retry"] += len(body["retry"])

    def batches(self, count: int, size: int) -> None:
        """``count`` webhook requests of ``size`` events, 4 at a time."""
        batches = [webhook_batch(f"w{next(self._serial)}-", size) for _ in range(count)]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(self._post_batch, batches))
        self.sent += count

    def _track(self, prefix: str) -> None:
        response = requests.post(self.app_url + "/track", params={"n": 40, "prefix": prefix}, timeout=30)
        body = response.json()
        self.tracked += body["accepted"]
        self.app_pids.add(body["pid"])

    def exposures(self, count: int) -> None:
        """``count`` provider-app requests of 40 exposures each, 4 at a time."""
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(self._track, [f"u{next(self._serial)}" for _ in range(count)]))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    require("prometheus")
    with contextlib.ExitStack() as stack:
        amplitude = stack.enter_context(AmplitudeEmulator(api_keys={API_KEY}))
        collector = stack.enter_context(SegmentCollector(WRITE_KEY))
        webhook = ServeProcess(
            {
                "AMPLITUDE_API_KEY": API_KEY,
                "AMPLITUDE_ENDPOINT": amplitude.http_api_url,
                "AMPLITUDE_DEADLINE": "1.5",
            },
            workers=2,
            argv=[sys.executable, "-m", "segment_exposure", "serve", "--metrics-port", "0"],
        )
        stack.callback(webhook.stop)
        app = ServeProcess(
            {
                "SEGMENT_WRITE_KEY": WRITE_KEY,
                "SEGMENT_HOST": collector.url,
                "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "app-metrics"),
            },
            workers=2,
            argv=[
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                str(MONITORING / "gunicorn_conf.py"),
                "--chdir",
                str(ROOT),
                "--workers",
                "2",
                "--error-logfile",
                "/dev/stdout",
                "tests.metrics_provider_app:app",
            ],
            listen=("--bind", "127.0.0.1:0"),
        )
        stack.callback(app.stop)
        metrics = webhook.wait_for(
            r"metrics: serving Prometheus metrics at http://(127\.0\.0\.1:\d+)/metrics"
        )
        targets = {"webhook": metrics.group(1), "app": app.url.removeprefix("http://")}
        prometheus = Prometheus(tmp_path, targets, rules_without_waiting(tmp_path))
        stack.callback(prometheus.stop)
        yield {
            "amplitude": amplitude,
            "collector": collector,
            "webhook": webhook,
            "app": app,
            "prometheus": prometheus,
        }


def webhook_pids(webhook: ServeProcess) -> set[int]:
    """The workers that have answered webhook requests, from their log lines."""
    return {int(m.group(1)) for m in map(WEBHOOK_LOG.search, webhook.log().splitlines()) if m}


def settle(check: Callable[[], dict[str, tuple[float | None, float]]], timeout: float = 60) -> None:
    """Wait until every (stored, expected) pair agrees; on the deadline, fail showing the ones that don't."""
    wait_until(lambda: all(got == want for got, want in check().values()), timeout=timeout, interval=0.25)
    differing = {name: pair for name, pair in check().items() if pair[0] != pair[1]}
    assert not differing, f"Prometheus (stored, expected): {differing}"


def test_prometheus_stores_what_the_emulators_counted(stack: dict[str, Any]) -> None:
    started = time.monotonic()
    amplitude: AmplitudeEmulator = stack["amplitude"]
    collector: SegmentCollector = stack["collector"]
    webhook: ServeProcess = stack["webhook"]
    prometheus: Prometheus = stack["prometheus"]
    traffic = Traffic(webhook.url, stack["app"].url)

    # Both targets scraped, and every zero-valued series stored, before anything happens.
    assert wait_until(
        lambda: (
            prometheus.scalar("sum(up)") == 2
            and prometheus.scalar("count(segment_exposure_provider_dropped_total)") == len(DROP_REASONS)
            and prometheus.scalar("count(segment_exposure_destination_events_total)") == 4
        ),
        timeout=60,
        interval=0.25,
    ), prometheus.log()

    # Faults on both sides: Segment refuses an upload for good (400) and fails one it will retry (500);
    # Amplitude fails, resets, then answers.
    collector.fail(500, count=1)
    collector.fail(400, count=1)
    amplitude.schedule(["503", "reset", None, "502", None, "500_after_ingest"])
    traffic.exposures(8)
    traffic.batches(12, 10)
    # Both workers of each server took part (the kernel spreads connections: send more until it has).
    deadline = time.monotonic() + 60
    while len(traffic.app_pids) < 2 and time.monotonic() < deadline:
        traffic.exposures(4)
    assert len(traffic.app_pids) == 2
    while len(webhook_pids(webhook)) < 2 and time.monotonic() < deadline:
        traffic.batches(4, 10)
    assert len(webhook_pids(webhook)) == 2

    # A webhook worker restarts: what it counted stays in the sums.
    os.kill(min(webhook_pids(webhook)), signal.SIGTERM)
    webhook.wait_for("worker ready", count=3, timeout=60)
    traffic.batches(4, 10)

    # An Amplitude outage: the webhook asks Segment to retry and the 5xx alert fires.
    amplitude.inject("503", count=None)
    traffic.batches(4, 5)
    assert wait_until(
        lambda: {"SegmentExposureAmplitude5xxRate", "SegmentExposureExposuresDropped"} <= prometheus.firing(),
        timeout=60,
        interval=0.25,
    ), f"firing: {prometheus.firing()}\n{prometheus.log()}"
    fired = prometheus.firing()
    amplitude.clear_faults()

    codes = Counter("reset" if r.status == 0 else str(r.status) for r in amplitude.requests)
    assert codes["503"] and codes["reset"] and codes["200"]
    assert traffic.outcomes["retry"] and traffic.outcomes["rejected"] and traffic.outcomes["not_exposure"]

    def stored(expr: str) -> float | None:
        return prometheus.scalar(f"sum({expr})")

    def webhook_check() -> dict[str, tuple[float | None, float]]:
        check = {
            f"events {o}": (
                stored(f'segment_exposure_destination_events_total{{outcome="{o}"}}'),
                traffic.outcomes[o],
            )
            for o in EVENT_OUTCOMES
        }
        check["ingested"] = (
            stored('segment_exposure_destination_events_total{outcome="delivered"}'),
            amplitude.ingested_count,
        )
        for code, n in codes.items():
            check[f"amplitude {code}"] = (
                stored(f'segment_exposure_amplitude_requests_total{{code="{code}"}}'),
                n,
            )
        check["amplitude all"] = (stored("segment_exposure_amplitude_requests_total"), sum(codes.values()))
        for status, n in traffic.statuses.items():
            check[f"answers {status}"] = (
                stored(f'segment_exposure_destination_requests_total{{status="{status}"}}'),
                n,
            )
        check["timed"] = (stored("segment_exposure_destination_request_seconds_count"), traffic.sent)
        return check

    def provider_check() -> dict[str, tuple[float | None, float]]:
        delivered = len(collector.events())
        return {
            "tracked": (
                stored('segment_exposure_provider_exposures_total{outcome="tracked"}'),
                traffic.tracked,
            ),
            "delivered": (
                stored('segment_exposure_provider_exposures_total{outcome="delivered"}'),
                delivered,
            ),
            "dropped": (stored("segment_exposure_provider_dropped_total"), traffic.tracked - delivered),
            "delivery_failed": (
                stored('segment_exposure_provider_dropped_total{reason="delivery_failed"}'),
                traffic.tracked - delivered,
            ),
            "queue": (stored("segment_exposure_provider_queue_size"), 0),
        }

    settle(webhook_check)
    settle(provider_check)
    dropped = prometheus.scalar("sum(segment_exposure_provider_dropped_total)")
    assert dropped is not None and 0 < dropped < traffic.tracked
    summary = {
        "tracked": traffic.tracked,
        "delivered_to_segment": len(collector.events()),
        "dropped": dropped,
        "webhook_events": dict(traffic.outcomes),
        "amplitude_codes": dict(codes),
        "answers": dict(traffic.statuses),
        "alerts": sorted(fired),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary))
