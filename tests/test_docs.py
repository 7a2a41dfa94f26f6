"""The docs are checked: every Python block of README.md and docs/ runs, and the site builds strict.

Each Python block runs through pytest-examples against the local emulators: before it runs, the few
placeholders that name a real service (``SUBSTITUTIONS``) are pointed at a local Segment collector, Amplitude
emulator or flag server, on the same line, so a traceback's line numbers still match the page. While a block
runs, any connection to a host other than this machine is recorded and fails the test. Every provider a
block made must then deliver everything it tracked, and is shut down.

A Python block that is not meant to run (a settings fragment, a test that needs a fixture) says so on its
fence, with a reason, in the attribute form both pytest-examples and the site's Markdown understand:
```` ```{.python test="skip" reason="..."} ````; it must still compile. Every other fence names its language,
so no Python hides in an unlabelled block.
"""

from __future__ import annotations

import dataclasses
import importlib
import ipaddress
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_examples import CodeExample, EvalExample, find_examples

from segment_exposure import SegmentExposureTrackingProvider
from segment_exposure.testing import AmplitudeEmulator, FlagConfigServer, SegmentCollector, demo_flags

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
EXAMPLES = [example for page in PAGES for example in find_examples(page)]

#: What a page says -> what the test runs: the real services become the local emulators. Each keeps its line.
SUBSTITUTIONS: tuple[tuple[str, str], ...] = (
    ('write_key="YOUR_SEGMENT_WRITE_KEY"', 'write_key="YOUR_SEGMENT_WRITE_KEY", host="{segment}"'),
    (
        'SEGMENT_EXPOSURE_WRITE_KEY="YOUR_SEGMENT_WRITE_KEY"',
        'SEGMENT_EXPOSURE_WRITE_KEY="YOUR_SEGMENT_WRITE_KEY", SEGMENT_EXPOSURE_HOST="{segment}"',
    ),
    (
        'api_key="YOUR_AMPLITUDE_API_KEY", region="EU"',
        'api_key="YOUR_AMPLITUDE_API_KEY", endpoint="{amplitude}"',
    ),
    ("LocalEvaluationConfig()", 'LocalEvaluationConfig(server_url="{flags}")'),
    ("RemoteEvaluationConfig(", 'RemoteEvaluationConfig(server_url="{flags}", '),
    ('"server-DEPLOYMENT_KEY"', '"{deployment_key}"'),
)

FENCE = re.compile(r"^ *```(.*)$", re.MULTILINE)
LANGUAGES = {"python", "py", "bash", "json", "text", "yaml", "toml", "console", "js", "javascript"}


@dataclasses.dataclass
class Services:
    segment: str
    amplitude: str
    flags: str
    deployment_key: str


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    with (
        SegmentCollector() as collector,
        AmplitudeEmulator() as amplitude,
        FlagConfigServer(flags=demo_flags()) as flags,
    ):
        yield Services(collector.url, amplitude.http_api_url, flags.url, flags.deployment_key)


class NetworkGuard:
    """Records every connection (or name lookup) a block makes to anything but this machine."""

    def __init__(self) -> None:
        self.active = False
        self.outside: list[str] = []
        self._lock = threading.Lock()
        sys.addaudithook(self._audit)  # stays for the process; records only while active

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event == "socket.getaddrinfo":
            host = args[0]
        elif event == "socket.connect" and isinstance(args[1], tuple):
            host = args[1][0]
        else:
            return
        host = host.decode() if isinstance(host, bytes) else str(host)
        if host == "localhost" or _is_loopback(host):
            return
        with self._lock:
            self.outside.append(f"{event} {host}")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_GUARD: NetworkGuard | None = None


@pytest.fixture
def network_guard() -> Iterator[NetworkGuard]:
    global _GUARD
    if _GUARD is None:
        _GUARD = NetworkGuard()
    _GUARD.outside.clear()
    _GUARD.active = True
    try:
        yield _GUARD
    finally:
        _GUARD.active = False


def substituted(example: CodeExample, services: Services) -> CodeExample:
    source = example.source
    for says, runs in SUBSTITUTIONS:
        source = source.replace(says, runs.format(**dataclasses.asdict(services)))
    assert source.count("\n") == example.source.count("\n"), "a substitution keeps the line count"
    return dataclasses.replace(example, source=source)


def _stop(value: object) -> None:
    """Stop what a block started and left running (a local evaluation client's poller)."""
    if type(value).__module__.startswith("amplitude_experiment") and callable(getattr(value, "stop", None)):
        value.stop()


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_python_block_runs(
    example: CodeExample, eval_example: EvalExample, services: Services, network_guard: NetworkGuard
) -> None:
    settings = example.prefix_settings()
    if settings.get("test") == "skip":
        assert settings.get("reason"), f"{example}: a block that does not run says why (reason=...)"
        compile(example.source, str(example), "exec")
        return
    namespace = eval_example.run(substituted(example, services))
    # type(), not isinstance(): a block's namespace may hold proxies (Flask's current_app) that raise.
    providers = [v for v in namespace.values() if issubclass(type(v), SegmentExposureTrackingProvider)]
    try:
        for provider in providers:
            assert provider.flush(timeout=10.0), f"{example}: a provider did not deliver what it tracked"
            dropped = provider.stats()["dropped"]
            assert not any(dropped.values()), f"{example}: exposures dropped: {dropped}"
    finally:
        for provider in providers:
            provider.shutdown(timeout=5.0)
        for value in namespace.values():
            _stop(value)
    assert not network_guard.outside, f"{example} reached outside this machine: {network_guard.outside}"


def test_the_examples_were_found() -> None:
    """Each substitution is used by some block, and the pages do have blocks that run."""
    assert len([e for e in EXAMPLES if e.prefix_settings().get("test") != "skip"]) >= 10
    sources = "\n".join(e.source for e in EXAMPLES)
    unused = [says for says, _ in SUBSTITUTIONS if says not in sources]
    assert not unused, f"substitutions no block uses (stale): {unused}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_fence_names_its_language(page: Path) -> None:
    opening = True
    for match in FENCE.finditer(page.read_text("utf-8")):
        if opening:
            language = match.group(1).split(" ", 1)[0].strip().removeprefix("{.").removesuffix("}")
            assert language in LANGUAGES, f"{page}: a fence without a known language: {match.group(0)!r}"
        opening = not opening


def test_generated_tables_agree_with_the_code() -> None:
    """The hook's descriptions cover exactly what the code has (it raises otherwise), for every table."""
    sys.path.insert(0, str(DOCS / "_hooks"))
    try:
        generated = importlib.import_module("generated")
    finally:
        sys.path.remove(str(DOCS / "_hooks"))
    for name in generated.GENERATORS:
        text = generated.expand(f"<!-- generated: {name} -->")
        assert text.strip() and "<!-- generated" not in text, name
    cli = generated.expand("<!-- generated: cli -->")
    from segment_exposure.cli import COMMANDS

    for command in COMMANDS:
        assert f"segment-exposure {command}" in cli
    with pytest.raises(generated.DocsGenerationError, match="unknown generated block"):
        generated.expand("<!-- generated: no-such-table -->")


@pytest.mark.slow
def test_the_site_builds_strict_and_documents_every_public_name(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    html = "".join(p.read_text("utf-8") for p in (site / "api").rglob("*.html"))
    documented = set(re.findall(r'id="(segment_exposure[\w.]*)"', html))
    import segment_exposure

    short = {name.rsplit(".", 1)[-1] for name in documented}
    assert not [n for n in segment_exposure.__all__ if n not in short]
    for module in (
        "segment_exposure.experiment",
        "segment_exposure.server",
        "segment_exposure.integrations.flask",
        "segment_exposure.integrations.django",
        "segment_exposure.integrations.asgi",
        "segment_exposure.identity",
        "segment_exposure.metrics",
        "segment_exposure.testing",
    ):
        names = importlib.import_module(module).__all__
        missing = [n for n in names if f"{module}.{n}" not in documented]
        assert not missing, f"{module}: not in the API reference: {missing}"
    for page in site.rglob("*.html"):
        assert "```" not in page.read_text("utf-8"), f"{page}: a fence the Markdown did not take as code"
    changelog = (site / "changelog" / "index.html").read_text("utf-8")
    assert "Keep a Changelog" in changelog, "the changelog page includes CHANGELOG.md"
