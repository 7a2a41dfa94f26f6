"""The ``segment-exposure`` command line: demo, serve, translate, function, doctor, replay.

A user's mistake (a bad path, invalid JSON, a missing key) is one line on stderr and exit code 2, never a
traceback. Each command lives in its own module and is imported only when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from segment_exposure.cli.errors import UserError
from segment_exposure.delivery.sources import SOURCES

__all__ = ["COMMANDS", "UserError", "build_parser", "main"]


EPILOGS = {
    "demo": """examples:
  segment-exposure demo                  # 1,000 users through the whole pipeline
  segment-exposure demo --users 200 --faults
""",
    "serve": """examples:
  AMPLITUDE_API_KEY=... SEGMENT_SHARED_SECRET=... segment-exposure serve --port 8080
  segment-exposure serve --region EU --workers 4
""",
    "translate": """examples:
  segment-exposure translate export.jsonl > amplitude.jsonl
  cat events.json | segment-exposure translate - --strict --min-id-length 3
""",
    "function": """examples:
  segment-exposure function > amplitude_exposure.js   # paste into a Segment destination function
""",
    "doctor": """examples:
  segment-exposure doctor export.jsonl
  segment-exposure doctor export.jsonl --flags flags.json --json
  segment-exposure doctor - --allow-warnings < export.jsonl
  segment-exposure doctor export.jsonl --expect-integrations-flag
""",
}


def build_parser() -> argparse.ArgumentParser:
    """The whole command line as an argparse parser.

    `main` runs it, and the docs' command-line page is generated from it, so the two cannot disagree.
    """
    parser = argparse.ArgumentParser(
        prog="segment-exposure",
        description="Amplitude Experiment exposures through Segment, without losing data.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=EPILOGS.get(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    demo = command("demo", "run the whole pipeline on this machine, no accounts needed")
    demo.add_argument("--users", type=_positive_int, default=1000, help="users to simulate (default 1000)")
    demo.add_argument("--requests", type=_positive_int, default=4, help="requests per user (default 4)")
    demo.add_argument("--faults", action="store_true", help="inject Segment and Amplitude faults")
    demo.add_argument("--seed", type=int, default=7, help="random seed for the simulation")
    demo.add_argument("--quiet", action="store_true", help="no progress display")

    serve = command("serve", "run the Amplitude destination as an HTTP (webhook) service under gunicorn")
    serve.add_argument("--api-key", default=None, help="Amplitude API key (default: $AMPLITUDE_API_KEY)")
    serve.add_argument(
        "--shared-secret", default=None, help="webhook secret (default: $SEGMENT_SHARED_SECRET)"
    )
    serve.add_argument("--region", default=None, help="US or EU (default: $AMPLITUDE_REGION or US)")
    serve.add_argument("--endpoint", default=None, help="full ingestion URL (default: $AMPLITUDE_ENDPOINT)")
    serve.add_argument("--host", default=None, help="address to bind (default: $HOST or 0.0.0.0)")
    serve.add_argument("--port", type=_port, default=None, help="port (default: $PORT or 8080)")
    serve.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: $WORKERS or 2)")
    serve.add_argument("--min-id-length", type=_positive_int, default=None)
    serve.add_argument("--deadline", type=float, default=None, help="seconds per delivery (default 4.5)")
    serve.add_argument(
        "--exposure-event",
        action="append",
        default=None,
        help="event name to treat as an exposure (repeatable)",
    )
    _source_option(serve, default=None)
    serve.add_argument("--max-body-bytes", type=_positive_int, default=None, help="request body cap (16 MiB)")
    serve.add_argument(
        "--body-timeout", type=float, default=None, help="seconds a request body may take to arrive (10)"
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus /metrics here (default: $METRICS_PORT, off)",
    )
    serve.add_argument(
        "--metrics-host", default=None, help="metrics address (default: $METRICS_HOST or 127.0.0.1)"
    )

    translate = command(
        "translate", "Segment events (JSON lines or a JSON array) to Amplitude events (JSON lines)"
    )
    translate.add_argument("file", help="input file, or - for stdin")
    translate.add_argument("--strict", action="store_true", help="exit 1 if any event fails")
    translate.add_argument("--min-id-length", type=_positive_int, default=None)
    translate.add_argument(
        "--exposure-event",
        action="append",
        default=None,
        help="event name to treat as an exposure (repeatable)",
    )
    _source_option(translate)

    command("function", "print the Segment Function (JavaScript) source")

    doctor = command("doctor", "audit Segment events for problems that spoil experiment results")
    doctor.add_argument("file", help="a JSON lines export, or - for stdin")
    doctor.add_argument(
        "--flags", default=None, help="flag configs (the /sdk/v2/flags JSON) to check variants"
    )
    doctor.add_argument("--min-id-length", type=_positive_int, default=None)
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument("--allow-warnings", action="store_true", help="exit 0 when only warnings are found")
    doctor.add_argument(
        "--expect-integrations-flag",
        action="store_true",
        help='warn about exposures without integrations {"Actions Amplitude": false} (information otherwise: '
        "a destination filter on Segment's side, which an export cannot show, does the same job)",
    )
    _source_option(doctor)
    from .replay_args import EPILOG as REPLAY_EPILOG
    from .replay_args import add_arguments as replay_arguments

    EPILOGS.setdefault("replay", REPLAY_EPILOG)
    replay_arguments(command("replay", "replay archived Segment events into Amplitude, each exposure once"))
    return parser


def _source_option(command: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """``--source``: whose Amplitude mapping applies (per event with auto: RudderStack's for its events)."""
    command.add_argument(
        "--source",
        choices=SOURCES,
        default=default,
        help="whose Amplitude mapping the events get: auto (RudderStack's for events RudderStack delivered, "
        "Segment's for the rest), segment or rudderstack (default: "
        + ("auto" if default else "$EVENT_SOURCE or auto")
        + ")",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {value}")
    return value


@contextmanager
def open_input(path: str) -> Iterator[IO[str]]:
    """``-`` is stdin; anything else a file that must exist. A broken JSON array is the user's mistake."""
    from .records import MalformedInput

    if path == "-":
        try:
            yield sys.stdin
        except MalformedInput as exc:
            raise UserError(f"stdin, {exc}") from None
        return
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        yield handle
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    except MalformedInput as exc:
        raise UserError(f"{path}, {exc}") from None
    finally:
        handle.close()


def load_json_file(path: str) -> Any:
    with open_input(path) as handle:
        try:
            return json.load(handle)
        except ValueError as exc:
            raise UserError(f"{path} is not valid JSON: {exc}") from None


def _run_translate(args: argparse.Namespace) -> int:
    from .translate_cmd import run_translate

    events = tuple(args.exposure_event or ("$exposure",))
    with open_input(args.file) as source:
        return run_translate(
            source,
            sys.stdout,
            sys.stderr,
            min_id_length=args.min_id_length,
            exposure_events=events,
            strict=args.strict,
            events_source=args.source,
        )


def _run_doctor(args: argparse.Namespace) -> int:
    from .doctor import audit, load_flag_variants
    from .output import print_findings

    flags = load_flag_variants(load_json_file(args.flags)) if args.flags else None
    with open_input(args.file) as source:
        findings, total = audit(
            source,
            flags=flags,
            min_id_length=args.min_id_length,
            expect_integrations_flag=args.expect_integrations_flag,
            events_source=args.source,
        )
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    infos = sum(f.severity == "info" for f in findings)
    if args.json:
        print(
            json.dumps(
                {
                    "events": total,
                    "errors": errors,
                    "warnings": warnings,
                    "info": infos,
                    "findings": [f.as_dict() for f in findings],
                },
                indent=2,
            )
        )
    else:
        print_findings(findings, total)
    if errors or (warnings and not args.allow_warnings):
        return 1
    return 0


def _run_function(args: argparse.Namespace) -> int:
    from importlib import resources

    source = resources.files("segment_exposure").joinpath("functions/amplitude_exposure.js")
    if not source.is_file():
        raise UserError("the Segment Function source is not bundled with this installation")
    sys.stdout.write(source.read_text(encoding="utf-8"))
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(
        users=args.users, requests=args.requests, faults=args.faults, seed=args.seed, quiet=args.quiet
    )


def _run_serve(args: argparse.Namespace) -> int:
    from .serve import run_serve

    return run_serve(args, os.environ)


def _run_replay(args: argparse.Namespace) -> int:
    from .replay_cmd import run_replay

    return run_replay(args, os.environ)


#: Each command of ``build_parser()``, by name, and what runs it.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _run_demo,
    "serve": _run_serve,
    "translate": _run_translate,
    "function": _run_function,
    "doctor": _run_doctor,
    "replay": _run_replay,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"segment-exposure {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"segment-exposure {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
