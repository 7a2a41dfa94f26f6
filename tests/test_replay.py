"""Issue 27: ``segment-exposure replay``, archived Segment events into Amplitude exactly once.

The archive is written here in Segment's S3 layout; replays go to the local Amplitude emulator over real
HTTP, S3 is moto's server on 127.0.0.1, and the crash is a real SIGKILL of a real subprocess.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from segment_exposure import AmplitudeEmulator
from segment_exposure.cli import main, replay_args
from segment_exposure.replay import (
    DAY_MS,
    Catalog,
    Cut,
    DeliveryState,
    IdPacer,
    Shard,
    TimeWindow,
    iter_lines,
    pacing,
    state,
    window,
)

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "replay-test-key-7f3e"
MAY_1 = 1714521600000  # 2024-05-01T00:00:00Z
MAY_2 = MAY_1 + DAY_MS
MAY_5 = MAY_1 + 4 * DAY_MS
JUNE_15 = MAY_1 + 45 * DAY_MS


def iso(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def exposure(n: int, when: int, *, variant: str | None = None, user: str | None = None) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "$exposure",
        "messageId": f"msg-{n:06d}",
        "userId": user or f"user-{n % 40:05d}",
        "anonymousId": f"anon-{n % 40:05d}",
        "timestamp": iso(when),
        "receivedAt": iso(when + 1000),
        "properties": {"flag_key": f"flag-{n % 3}", "variant": variant or ("on" if n % 2 else "off")},
    }


def line(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode() + b"\n"


@dataclass
class Archive:
    root: Path
    expected: set[str] = field(default_factory=set)  # messageIds of every readable, valid exposure
    in_may: set[str] = field(default_factory=set)  # ... whose time is May 1-2
    files: dict[str, bytes] = field(default_factory=dict)  # key -> content, for uploading to S3

    def put(self, key: str, content: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        self.files[key] = content


def build_archive(root: Path) -> Archive:
    """Segment's layout, with repeats across files, broken lines, a non-UTF-8 line, a truncated .gz,
    a refused event, a late event filed days after its time, and a far day folder of garbage."""
    archive = Archive(root)
    day1 = f"segment-logs/src-a/{MAY_1}"
    first = [line(exposure(n, MAY_1 + n * 1000)) for n in range(60)]
    first.insert(10, b'{"type": "page", "messageId": "page-1"}\n')
    first.insert(20, b"this is not json\n")
    first.insert(30, b'{"type": "track", "event": "$exposure", "messageId": "utf", "note": "\xff\xfe"}\n')
    archive.put(f"{day1}/part-1.gz", gzip.compress(b"".join(first)))
    repeats = [line(exposure(n, MAY_1 + n * 1000)) for n in range(50, 80)]  # 50..59 repeat part-1
    archive.put(f"{day1}/part-2.gz", gzip.compress(b"".join(repeats)))
    archive.expected |= {f"msg-{n:06d}" for n in range(80)}

    day2 = f"segment-logs/src-a/{MAY_2}"
    refused = {**exposure(999, MAY_2), "properties": {"variant": "on"}}  # no flag_key
    archive.put(f"{day2}/part-3.json", line(exposure(80, MAY_2 + 5)) + line(refused))  # plain JSON lines
    archive.expected.add("msg-000080")
    # A truncated upload: a distinct payload per event so the cut falls mid-stream.
    big = b"".join(
        line({**exposure(n, MAY_2 + n), "context": {"page": {"url": os.urandom(40).hex()}}})
        for n in range(100, 400)
    )
    whole = gzip.compress(big)
    cut = whole[: len(whole) // 2]
    archive.put(f"{day2}/part-4.gz", cut)
    readable = zlib.decompressobj(31).decompress(cut).split(b"\n")[:-1]  # complete lines before the cut
    assert 10 < len(readable) < 300
    archive.expected |= {json.loads(text)["messageId"] for text in readable}
    archive.in_may = set(archive.expected)

    # Received May 5 but happened May 2 (a phone that was offline): inside the window's lateness.
    archive.put(f"segment-logs/src-b/{MAY_5}/late.gz", gzip.compress(line(exposure(500, MAY_2 + 7))))
    archive.expected.add("msg-000500")
    archive.in_may.add("msg-000500")
    # Far outside any May window: valid June events and garbage that must never be read then.
    june = line(exposure(600, JUNE_15 + 1)) + b"garbage that would count as a broken line\n"
    archive.put(f"segment-logs/src-b/{JUNE_15}/june.gz", gzip.compress(june))
    archive.expected.add("msg-000600")
    return archive


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    return build_archive(tmp_path / "archive")


@pytest.fixture
def amplitude() -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator(api_keys={API_KEY}) as emulator:
        yield emulator


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMPLITUDE_API_KEY", API_KEY)
    monkeypatch.setenv("COLUMNS", "200")  # rich's tables on one line each, for the assertions
    monkeypatch.delenv("AMPLITUDE_ENDPOINT", raising=False)


def replay(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["replay", *args])
    out, err = capsys.readouterr()
    return code, out, err


def count(out: str, label: str, *, exact: bool = False) -> int:
    """The number in the summary row whose label starts with ``label`` (is ``label``, when exact)."""
    rest = r"\s*│" if exact else r"[^│]*│"
    match = re.search(r"│ " + re.escape(label) + rest + r"\s*([\d,]+)", out)
    assert match, f"{label!r} not in:\n{out}"
    return int(match[1].replace(",", ""))


def ingested_ids(amplitude: AmplitudeEmulator) -> list[str]:
    return [event["insert_id"] for event in amplitude.ingested]


# -- the whole command, against the emulator --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("env")
def test_every_readable_exposure_arrives_once_and_a_rerun_sends_nothing(
    archive: Archive, amplitude: AmplitudeEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_file = str(tmp_path / "state.sqlite3")
    code, out, err = replay(
        capsys, str(archive.root), "--endpoint", amplitude.batch_url, "--state", state_file
    )
    assert code == 1  # broken lines, a truncated file and a refused event were skipped
    ids = ingested_ids(amplitude)
    assert sorted(ids) == sorted(archive.expected)  # each once, the repeats of part-2 included
    assert amplitude.duplicates_dropped == 0
    assert all(e["$skip_user_properties_sync"] is True for e in amplitude.ingested)
    assert all(e["event_type"] == "$exposure" for e in amplitude.ingested)
    day1 = f"segment-logs/src-a/{MAY_1}"
    assert f"{day1}/part-1.gz:21: not JSON" in err
    assert f"{day1}/part-1.gz:31: not UTF-8 text" in err
    assert re.search(rf"{MAY_2}/part-4.gz:\d+: truncated gzip file", err)
    assert f"{MAY_2}/part-3.json:2: InvalidEventPayload" in err
    assert count(out, "repeats") == 10
    assert count(out, "broken lines") == 3  # not JSON, not UTF-8, June's garbage
    assert count(out, "delivered", exact=True) == len(archive.expected)
    assert "Traceback" not in err

    requests = amplitude.request_count
    code, out, _ = replay(capsys, str(archive.root), "--endpoint", amplitude.batch_url, "--state", state_file)
    assert code == 1  # the same broken input is still there
    assert amplitude.request_count == requests  # nothing sent again
    assert count(out, "delivered by an earlier run") == len(archive.expected)
    assert count(out, "sent", exact=True) == 0


@pytest.mark.slow
@pytest.mark.usefixtures("env")
def test_exit_codes_clean_archive_0_usage_errors_2(
    tmp_path: Path, amplitude: AmplitudeEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b"".join(line(exposure(n, MAY_1 + n)) for n in range(25)))
    state_file = str(tmp_path / "s.sqlite3")
    code, out, _ = replay(capsys, str(clean), "--endpoint", amplitude.batch_url, "--state", state_file)
    assert code == 0
    assert "reconciled" in out
    assert amplitude.ingested_count == 25
    for args in (
        [str(tmp_path / "missing.gz")],
        [str(clean), "--since", "last tuesday"],
        [str(clean), "--since", "2024-05-02", "--until", "2024-05-01"],
        [str(clean), "--shard", "5/4"],
        [str(clean), "--endpoint", "not a url"],
        [str(clean), "--state", str(tmp_path)],  # a folder is no SQLite file
    ):
        code, _, err = replay(capsys, *args)
        assert code == 2, args
        assert err.startswith("segment-exposure replay: error:") and "Traceback" not in err, err
    assert amplitude.ingested_count == 25


@pytest.mark.slow
def test_no_api_key_is_a_usage_error_and_a_wrong_one_stops_the_run(
    tmp_path: Path, amplitude: AmplitudeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(line(exposure(1, MAY_1)))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AMPLITUDE_")}
    command = [
        sys.executable,
        "-m",
        "segment_exposure",
        "replay",
        str(clean),
        "--endpoint",
        amplitude.batch_url,
    ]
    command += ["--state", str(tmp_path / "s.sqlite3")]
    done = subprocess.run(command, env={**environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert done.returncode == 2 and "AMPLITUDE_API_KEY" in done.stderr
    wrong = {**environ, "PYTHONPATH": str(ROOT), "AMPLITUDE_API_KEY": "not-the-key"}
    done = subprocess.run(command, env=wrong, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "refused the configuration" in done.stderr
    assert "not-the-key" not in done.stderr + done.stdout  # the key is never echoed
    assert amplitude.ingested_count == 0


@pytest.mark.slow
@pytest.mark.usefixtures("env")
def test_dry_run_sends_nothing_and_prints_counts_per_flag_and_variant(
    archive: Archive, amplitude: AmplitudeEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_file = tmp_path / "state.sqlite3"
    code, out, _ = replay(
        capsys, str(archive.root), "--dry-run", "--endpoint", amplitude.batch_url, "--state", str(state_file)
    )
    assert code == 1  # broken input found
    assert amplitude.request_count == 0
    assert not state_file.exists()  # a dry run leaves the state alone
    assert count(out, "would send") == len(archive.expected)
    rows = re.findall(r"│\s*(flag-\d)\s*│\s*(on|off)\s*│\s*([\d,]+)\s*│", out)
    assert sum(int(n) for _, _, n in rows) == len(archive.expected)
    assert {(flag, variant) for flag, variant, _ in rows} == {
        (f"flag-{i}", v) for i in range(3) for v in ("on", "off")
    }
    assert count(out, "users") == 40
    assert f"{iso(MAY_1)[:19]}Z .. {iso(JUNE_15 + 1)[:19]}Z" in out


@pytest.mark.slow
@pytest.mark.usefixtures("env")
def test_since_until_skip_far_day_folders_unread_and_keep_late_arrivals(
    archive: Archive, amplitude: AmplitudeEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = replay(
        capsys,
        str(archive.root),
        "--since",
        "2024-05-01",
        "--until",
        "2024-05-03",
        "--endpoint",
        amplitude.batch_url,
        "--state",
        str(tmp_path / "s.sqlite3"),
    )
    assert code == 1
    assert set(ingested_ids(amplitude)) == archive.in_may  # the late event from the May 5 folder too
    assert count(out, "day folders skipped unread") == 1
    assert "june.gz" not in err  # its garbage was never read
    assert count(out, "broken lines") == 2
    assert count(out, "files read") == 5  # part-1..4 and late.gz, not june.gz


@pytest.mark.slow
def test_a_sigkill_mid_run_then_a_rerun_completes_the_set_without_duplicates(
    tmp_path: Path, amplitude: AmplitudeEmulator
) -> None:
    day = tmp_path / "archive" / "segment-logs" / "src" / str(MAY_1)
    day.mkdir(parents=True)
    total = 12_000
    for part in range(6):
        events = (
            line(exposure(n, MAY_1 + n, user=f"user-{n:06d}")) for n in range(part * 2000, (part + 1) * 2000)
        )
        (day / f"part-{part}.gz").write_bytes(gzip.compress(b"".join(events)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AMPLITUDE_API_KEY": API_KEY}
    env.pop("AMPLITUDE_ENDPOINT", None)
    command = [sys.executable, "-m", "segment_exposure", "replay", str(tmp_path / "archive")]
    command += ["--endpoint", amplitude.batch_url, "--state", str(tmp_path / "state.sqlite3")]
    # --rate 1000: batches of 1000 a second apart, so the kill lands mid-run.
    process = subprocess.Popen([*command, "--rate", "1000"], env=env, stdout=subprocess.DEVNULL)
    try:
        assert amplitude.wait_for_ingested(3000, timeout=60)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    before = amplitude.ingested_count
    assert 3000 <= before < total
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    ids = ingested_ids(amplitude)
    assert len(ids) == total and set(ids) == {f"msg-{n:06d}" for n in range(total)}
    # Sent twice at most: the one batch (1000 events, --rate) in flight when the process died.
    assert amplitude.duplicates_dropped <= 1000
    assert sum(r.events for r in amplitude.requests if r.status == 200) <= total + 1000


@pytest.mark.slow
@pytest.mark.usefixtures("env")
def test_an_s3_bucket_behind_moto_replays_like_the_local_folder(
    archive: Archive, amplitude: AmplitudeEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boto3 = pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for name, value in {
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            os.environ[name] = value
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="segment-archive")
        for key, content in archive.files.items():
            s3.put_object(Bucket="segment-archive", Key=f"prod/{key}", Body=content)
        state_file = str(tmp_path / "s3.sqlite3")
        args = ("--endpoint", amplitude.batch_url, "--state", state_file)
        code, out, err = replay(capsys, "s3://segment-archive/prod", *args)
        assert code == 1
        assert sorted(ingested_ids(amplitude)) == sorted(archive.expected)
        assert f"s3://segment-archive/prod/segment-logs/src-a/{MAY_1}/part-1.gz:31: not UTF-8 text" in err
        assert count(out, "repeats") == 10

        amplitude.reset()
        window = ("--since", "2024-05-01", "--until", "2024-05-03")
        code, out, _ = replay(
            capsys,
            "s3://segment-archive/prod/",
            *window,
            "--endpoint",
            amplitude.batch_url,
            "--state",
            str(tmp_path / "s3-window.sqlite3"),
        )
        assert set(ingested_ids(amplitude)) == archive.in_may
        assert count(out, "day folders skipped unread") == 1

        code, _, err = replay(capsys, "s3://no-such-bucket/x", *args)
        assert code == 2 and "NoSuchBucket" in err
    finally:
        for name in (
            "AWS_ENDPOINT_URL_S3",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
        ):
            os.environ.pop(name, None)
        server.stop()


@pytest.mark.slow
@pytest.mark.usefixtures("env")
def test_replayed_old_exposures_leave_the_current_experiment_property_alone(
    tmp_path: Path, amplitude: AmplitudeEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # Live today: the user is in "treatment". The archive holds their May exposure to "control".
    from segment_exposure.delivery.amplitude import AmplitudeClient

    with AmplitudeClient(API_KEY, endpoint=amplitude.batch_url) as client:
        live = {
            "event_type": "$exposure",
            "user_id": "user-live1",
            "insert_id": "live-1",
            "time": JUNE_15,
            "event_properties": {"flag_key": "checkout", "variant": "treatment"},
        }
        assert client.send([live]).all_delivered
    old = {**exposure(1, MAY_1, variant="control", user="user-live1")}
    old["properties"]["flag_key"] = "checkout"
    path = tmp_path / "old.jsonl"
    path.write_bytes(line(old))
    args = (str(path), "--endpoint", amplitude.batch_url)
    assert replay(capsys, *args, "--state", str(tmp_path / "a.sqlite3"))[0] == 0
    # Amplitude applies user properties in ingestion order during a backfill; skipped here.
    assert amplitude.experiment_properties(order="ingestion")[("user-live1", "checkout")] == "treatment"
    # Without the default, the old variant would win: what the default protects against.
    amplitude.reset()
    assert replay(capsys, *args, "--state", str(tmp_path / "b.sqlite3"), "--sync-user-properties")[0] == 0
    assert "$skip_user_properties_sync" not in amplitude.ingested[0]


# -- the parts ----------------------------------------------------------------------------------------


def test_a_truncated_gzip_keeps_every_complete_line_and_says_where_it_ends() -> None:
    lines = [f'{{"n": {n}, "pad": "{os.urandom(30).hex()}"}}'.encode() for n in range(500)]
    whole = gzip.compress(b"\n".join(lines) + b"\n")
    cut = whole[: len(whole) * 2 // 3]
    chunks = iter([cut[i : i + 777] for i in range(0, len(cut), 777)] + [b""])
    items = list(iter_lines(lambda _size: next(chunks)))
    assert isinstance(items[-1], Cut) and "truncated" in items[-1].reason
    got = [raw for _, raw in items[:-1]]  # type: ignore[misc]
    assert 100 < len(got) < 500 and got == lines[: len(got)]
    assert items[-1].line == len(got) + 1


def test_gzip_members_plain_files_and_a_missing_last_newline() -> None:
    two_members = gzip.compress(b"a\nb\n") + gzip.compress(b"c\n")
    chunks = iter([two_members, b""])
    assert list(iter_lines(lambda _size: next(chunks))) == [(1, b"a"), (2, b"b"), (3, b"c")]
    plain = iter([b"x\ny", b"z", b""])
    assert list(iter_lines(lambda _size: next(plain))) == [(1, b"x"), (2, b"yz")]
    corrupt = iter([gzip.compress(b"q\n")[:-8] + b"\x00" * 8, b""])  # a wrong CRC
    items = list(iter_lines(lambda _size: next(corrupt)))
    assert isinstance(items[-1], Cut) and "corrupt" in items[-1].reason


def test_day_folders_are_skipped_only_when_no_event_of_the_window_can_be_in_them() -> None:
    may = TimeWindow.from_text("2024-05-01", "2024-05-03", max_lateness_days=7)
    assert may.may_hold(MAY_1) and may.may_hold(MAY_2)
    assert may.may_hold(MAY_1 + 8 * DAY_MS)  # received May 9: may hold a late-May-2 event 7 days late
    assert not may.may_hold(MAY_1 + 9 * DAY_MS)
    assert not may.may_hold(MAY_1 - DAY_MS - window.CLOCK_SKEW_MS)  # April 29: over before May began
    assert may.may_hold(MAY_1 - DAY_MS)  # April 30: an event up to an hour ahead of its receipt
    assert may.contains(MAY_1) and not may.contains(MAY_1 + 2 * DAY_MS) and not may.contains(None)
    assert TimeWindow().contains(None)
    with pytest.raises(ValueError):
        TimeWindow.from_text("2024-05-03", "2024-05-01")


def test_shards_split_the_files_between_machines_each_exactly_once(tmp_path: Path) -> None:
    keys = [f"segment-logs/s/{MAY_1 + d * DAY_MS}/part-{i}.gz" for d in range(10) for i in range(20)]
    owners = [[n for n in range(1, 5) if Shard(n, 4).owns(key)] for key in keys]
    assert all(len(o) == 1 for o in owners)
    assert all(40 <= sum(o == [n] for o in owners) <= 60 for n in range(1, 5))  # roughly even
    for key in keys[:30]:
        path = tmp_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    catalogs = [Catalog(TimeWindow(), Shard(n, 3)) for n in range(1, 4)]
    names = [sorted(f.key for f in c.files([str(tmp_path)])) for c in catalogs]
    assert sorted(key for shard in names for key in shard) == sorted(keys[:30])
    days = [f.day_ms for f in Catalog(TimeWindow(), Shard()).files([str(tmp_path)])]
    assert days == sorted(days)  # received-day order
    with pytest.raises(ValueError):
        Shard.parse("0/3")


def test_the_state_resends_what_a_killed_run_claimed_and_skips_what_was_delivered(tmp_path: Path) -> None:
    path = str(tmp_path / "state.sqlite3")
    first = DeliveryState(path)
    claim = first.claim(["a", "b", "c", "a"])
    assert claim.fresh == [0, 1, 2] and claim.repeated == 1
    first.record(["a"], rejected=["b"])
    assert first.claim(["c"]).repeated == 1  # held by this run
    first.commit()  # "c" claimed, never confirmed: the run dies here
    second = DeliveryState(path)
    claim = second.claim(["a", "b", "c", "d"])
    assert (claim.fresh, claim.delivered_before, claim.rejected_before) == ([2, 3], 1, 1)
    second.close()
    first.close()


def test_the_pacer_keeps_each_device_to_its_rate_and_forgets_old_ids() -> None:
    pacer = IdPacer(rate=100, burst=1.0)
    times = [pacer.schedule(["device-1"], now=0.0) for _ in range(300)]
    assert max(times[:101]) < 1e-9  # a second's burst at once
    assert times[-1] == pytest.approx(1.99)
    for horizon in (0.5, 1.0, 1.5, 2.0):  # at most the burst plus the rate times the time since
        assert sum(t < horizon for t in times) <= 100 + 100 * horizon + 1
    assert pacer.schedule(["device-2"], now=0.0) == 0.0  # others are not held up
    for n in range(pacing.PRUNE_AT + 10):
        pacer.schedule([f"d{n}"], now=100.0 + n * 0.001)
    assert len(pacer) < pacing.PRUNE_AT  # ids whose time passed are gone


def test_the_help_defaults_match_the_replay_package() -> None:
    assert replay_args.DEFAULT_STATE_FILE == state.DEFAULT_STATE_FILE
    assert replay_args.DEFAULT_MAX_LATENESS_DAYS == window.DEFAULT_MAX_LATENESS_DAYS
    assert replay_args.DEFAULT_PER_ID_RATE == pacing.DEFAULT_PER_ID_RATE


@pytest.mark.usefixtures("env")
def test_stdin_gzip_dry_run_with_progress(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    data = gzip.compress(b"".join(line(exposure(n, MAY_1 + n)) for n in range(30)))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, err = replay(capsys, "-", "--dry-run", "--progress")
    assert code == 0
    assert count(out, "would send") == 30
    assert "files 1/1" in err  # the progress line, on stderr although it is not a terminal
    code, _, err = replay(capsys, "-", "-", "--dry-run")
    assert code == 2 and "stdin" in err
