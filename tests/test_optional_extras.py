"""Each optional integration, used without its package installed, names the extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    ("flask", ["import segment_exposure.integrations.flask"], "flask"),
    ("django", ["import segment_exposure.integrations.django"], "django"),
    ("starlette", ["import segment_exposure.integrations.asgi"], "fastapi"),
    ("fastapi", ["import segment_exposure.integrations.fastapi"], "fastapi"),
    (
        "amplitude_experiment",
        [
            "from segment_exposure.experiment import ExposureTrackingClient",
            "ExposureTrackingClient(object(), None)",
        ],
        "experiment",
    ),
    (
        "prometheus_client",
        ["from segment_exposure.metrics import register", "register(object())"],
        "metrics",
    ),
    ("openfeature", ["import segment_exposure.openfeature"], "openfeature"),
    (
        "ijson",
        [
            "import io",
            "from segment_exposure.cli.records import iter_records",
            "list(iter_records(io.StringIO('[1]')))",  # JSON lines need no extra; an array does
        ],
        "cli",
    ),
    (
        "boto3",
        [
            "from segment_exposure.replay import S3Archive, TimeWindow",
            "S3Archive()('s3://bucket/prefix', TimeWindow(), print)",
        ],
        "s3",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("module", "statements", "extra"), CASES, ids=[c[0] for c in CASES])
def test_a_missing_package_names_its_extra(module: str, statements: list[str], extra: str) -> None:
    body = "".join(f"    {line}\n" for line in statements)
    code = (
        f"import sys; sys.modules[{module!r}] = None  # as if it were not installed\n"
        f"try:\n{body}except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('worked without the package')\n"
        "import segment_exposure, segment_exposure.integrations  # the rest of the package is unaffected\n"
    )
    run = [sys.executable, "-c", code]
    done = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"pip install 'segment-exposure[{extra}]'" in done.stdout
