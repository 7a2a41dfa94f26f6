"""The command line, run as users run it: the installed ``segment-exposure`` script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
VECTORS = sorted((HERE / "vectors" / "translate").glob("*.json"))
FIXTURES = HERE / "fixtures"


def cli(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMPLITUDE_", "SEGMENT_"))}
    return subprocess.run(
        [sys.executable, "-m", "segment_exposure", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _default_vectors() -> list[dict[str, Any]]:
    """Vectors that use the default options, which is what the command runs with."""
    return [v for path in VECTORS for v in json.loads(path.read_text()) if not v.get("options")]


def test_translate_round_trips_the_golden_vectors(tmp_path: Path) -> None:
    vectors = _default_vectors()
    source = tmp_path / "events.jsonl"
    source.write_text("".join(json.dumps(v["input"]) + "\n" for v in vectors))
    done = cli("translate", str(source))
    assert done.returncode == 0, done.stderr
    produced = [json.loads(line) for line in done.stdout.splitlines()]
    expected = [v["expect"] for v in vectors if "error" not in v["expect"]]
    assert produced == expected
    failures = [line for line in done.stderr.splitlines() if line.startswith("line ")]
    wanted = [(i + 1, v["expect"]["error"]) for i, v in enumerate(vectors) if "error" in v["expect"]]
    assert [(int(f.split(":")[0][5:]), f.split(": ")[1]) for f in failures] == wanted


@pytest.mark.slow
def test_translate_reads_a_json_array_from_stdin_and_strict_fails() -> None:
    good = {
        "type": "track",
        "event": "$exposure",
        "userId": "user-00001",
        "messageId": "m-1",
        "timestamp": "2026-11-24T10:00:00Z",
        "properties": {"flag_key": "f", "variant": "on"},
    }
    bad = {"type": "identify", "userId": "user-00001"}
    text = json.dumps([good, bad, good], indent=2)
    done = cli("translate", "-", stdin=text)
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 2
    assert "line 13: EventNotSupported:" in done.stderr  # the line where the second object starts
    strict = cli("translate", "-", "--strict", stdin=text)
    assert strict.returncode == 1


@pytest.mark.slow
@pytest.mark.parametrize("command", ["translate", "doctor"])
def test_a_json_array_missing_a_comma_is_a_clear_error_with_its_line(command: str) -> None:
    event = {"type": "track", "event": "$exposure", "userId": "user-00001", "messageId": "m-1"}
    one = json.dumps(event, indent=2)  # 6 lines
    text = f"[\n{one},\n{one}\n{one}\n]\n"  # no comma after the second object: the third starts on line 14
    done = cli(command, "-", stdin=text)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (last,) = [line for line in done.stderr.splitlines() if "error:" in line]
    assert last.startswith(f"segment-exposure {command}: error: stdin, line 14: invalid JSON array:")
    assert "','" in last  # yajl: "after array element, I expect ',' or ']'"
    unclosed = cli(command, "-", stdin=f"[\n{one},\n{one}\n")
    assert unclosed.returncode == 2 and "invalid JSON array" in unclosed.stderr


@pytest.mark.slow
def test_translate_min_id_length_and_invalid_json_lines() -> None:
    short = {
        "type": "track",
        "event": "$exposure",
        "userId": "abc",
        "timestamp": "2026-11-24T10:00:00Z",
        "properties": {"flag_key": "f"},
    }
    text = json.dumps(short) + "\n{not json\n"
    done = cli("translate", "-", stdin=text)
    assert "line 1: ValidationError:" in done.stderr and "min_id_length" in done.stderr
    assert "line 2: InvalidEventPayload: invalid JSON" in done.stderr
    relaxed = cli("translate", "-", "--min-id-length", "3", stdin=text)
    assert json.loads(relaxed.stdout.splitlines()[0])["user_id"] == "abc"


@pytest.mark.slow
@pytest.mark.parametrize("form", ["lines", "one-line array"])
def test_translate_streams_a_large_file_with_flat_memory(tmp_path: Path, form: str) -> None:
    event = {
        "type": "track",
        "event": "$exposure",
        "anonymousId": "device-0001",
        "timestamp": "2026-11-24T10:00:00Z",
        "properties": {"flag_key": "f", "variant": "on", "padding": "x" * 1000},
    }
    source = tmp_path / "big.jsonl"
    with source.open("w") as handle:
        if form == "lines":
            line = json.dumps(event) + "\n"
            for _ in range(60_000):  # ~66 MB
                handle.write(line)
        else:
            handle.write("[" + ",".join([json.dumps(event)] * 60_000) + "]")  # ~66 MB on one line
    # VmHWM is this process's own peak; ru_maxrss would include the forking parent's (pytest's) size.
    code = (
        "import sys\n"
        "from segment_exposure.cli import main\n"
        "sys.stdout = open('/dev/null', 'w')\n"
        "rc = main(['translate', sys.argv[1]])\n"
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print(peak, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(source)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    assert peak_kb < 100_000  # ~20 MB in practice: far below the 66 MB file


def test_doctor_finds_every_planted_problem() -> None:
    done = cli(
        "doctor",
        str(FIXTURES / "doctor_planted.jsonl"),
        "--flags",
        str(FIXTURES / "doctor_flags.json"),
        "--json",
    )
    assert done.returncode == 1
    report = json.loads(done.stdout)
    counts = {f["check"]: f["count"] for f in report["findings"]}
    assert counts == {
        "misnamed_exposure": 2,
        "missing_flag_key": 1,
        "variant_value_not_key": 1,
        "unset_variant": 1,
        "invalid_id": 1,
        "missing_message_id": 1,
        "duplicate_message_id": 1,
        "device_id_mismatch": 1,
        "timestamp_future": 1,
        "timestamp_old": 1,
        "double_routing": 1,
        "not_json_object": 2,
    }
    by_check = {f["check"]: f for f in report["findings"]}
    assert by_check["unset_variant"]["breakdown"] == {"checkout-flow": 1}
    assert by_check["misnamed_exposure"]["breakdown"] == {"Exposure": 1, "[Experiment] Exposure": 1}
    assert all(f["fix"] for f in report["findings"])


@pytest.mark.slow
def test_doctor_on_a_clean_export_finds_nothing() -> None:
    done = cli("doctor", str(FIXTURES / "doctor_clean.jsonl"), "--json")
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["findings"] == []
    table = cli("doctor", str(FIXTURES / "doctor_clean.jsonl"))
    assert "no problems found" in table.stdout


@pytest.mark.slow
def test_doctor_warnings_alone_can_be_allowed(tmp_path: Path) -> None:
    lines = (FIXTURES / "doctor_clean.jsonl").read_text().splitlines()
    event = json.loads(lines[0])
    del event["timestamp"], event["receivedAt"]  # a warning: Amplitude will use the upload time
    source = tmp_path / "warn.jsonl"
    source.write_text(json.dumps(event) + "\n")
    assert cli("doctor", str(source)).returncode == 1
    assert cli("doctor", str(source), "--allow-warnings").returncode == 0


@pytest.mark.slow
def test_doctor_reports_a_missing_integrations_flag_as_information(tmp_path: Path) -> None:
    """A destination filter on Segment's side does the flag's job and an export cannot show it."""
    lines = (FIXTURES / "doctor_clean.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    for event in events:
        event["integrations"] = {}
    source = tmp_path / "no_flag.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in events))

    done = cli("doctor", str(source), "--json")
    assert done.returncode == 0, done.stdout
    report = json.loads(done.stdout)
    assert (report["errors"], report["warnings"], report["info"]) == (0, 0, 1)
    (finding,) = report["findings"]
    exposures = sum(e.get("event") == "$exposure" for e in events)
    assert (finding["check"], finding["severity"]) == ("double_routing", "info")
    assert finding["count"] == exposures
    assert "destination filter" in finding["fix"]
    table = cli("doctor", str(source))
    assert table.returncode == 0 and "info" in table.stdout  # shown in the table, not counted

    strict = cli("doctor", str(source), "--json", "--expect-integrations-flag")
    assert strict.returncode == 1
    (finding,) = json.loads(strict.stdout)["findings"]
    assert finding["severity"] == "warning"
    assert cli("doctor", str(source), "--expect-integrations-flag", "--allow-warnings").returncode == 0
    clean = cli("doctor", str(FIXTURES / "doctor_clean.jsonl"), "--expect-integrations-flag", "--json")
    assert clean.returncode == 0 and json.loads(clean.stdout)["findings"] == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("doctor", "/no/such/file.jsonl"),
        ("translate", "/no/such/file.jsonl"),
        ("doctor", str(FIXTURES / "doctor_clean.jsonl"), "--flags", str(FIXTURES / "doctor_planted.jsonl")),
        ("serve",),  # no API key anywhere
        ("serve", "--api-key", "test-key-123", "--deadline", "-1"),
        ("serve", "--api-key", "test-key-123", "--region", "MARS"),
        ("replay", "/no/such/archive", "--dry-run"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    done = cli(*args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"segment-exposure {args[0]}: error:")


@pytest.mark.slow
def test_every_command_has_help_with_examples() -> None:
    for command in ("demo", "serve", "translate", "function", "doctor", "replay"):
        done = cli(command, "--help")
        assert done.returncode == 0 and "examples:" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("faults", [False, True])
def test_demo_runs_the_whole_pipeline_and_reconciles(faults: bool) -> None:
    args = ["demo", "--users", "150", "--quiet"] + (["--faults"] if faults else [])
    done = cli(*args, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reconciled: every exposure delivered exactly once" in done.stdout
    rows = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 2 and cells[1].isdigit():
            rows[cells[0]] = int(cells[1])
    tracked = rows["exposures tracked (sent to Segment)"]
    assert tracked > 150  # several flags per user, and the mid-run change re-exposes some users
    assert rows["delivered to Segment (unique messageIds)"] == tracked
    assert rows["events ingested by Amplitude"] == tracked
    assert rows["users whose Amplitude property differs from what they were served"] == 0
    if faults:
        assert rows["duplicates removed by insert_id"] > 0  # 500-after-ingest made real duplicates
