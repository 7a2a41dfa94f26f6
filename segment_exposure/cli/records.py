"""Reading Segment events from a file or stdin, one at a time, whatever the export format.

JSON lines and a single JSON array are both streamed, so memory stays flat on a large export; each
record carries the line it started on, for error messages a person can act on. A JSON array is parsed by
ijson (the ``cli`` extra; its C backend when built), a maintained parser that refuses what JSON refuses
(a missing comma, say); it is fed at most one line at a time, so each event and each syntax error is
known by its line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

__all__ = ["BadRecord", "MalformedInput", "Record", "iter_records"]

#: The most text handed to the parser at once: a one-line array of any size still streams.
_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Record:
    line: int
    value: Any


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A JSON line that does not parse: the lines around it still do."""

    line: int
    error: str


class MalformedInput(ValueError):
    """A JSON array broken at ``line``: nothing after that point can be read reliably."""

    def __init__(self, line: int, error: str) -> None:
        super().__init__(f"line {line}: invalid JSON array: {error}")
        self.line = line


def iter_records(stream: IO[str]) -> Iterator[Record | BadRecord]:
    """Yield each JSON value in ``stream`` (JSON lines, or one JSON array of values).

    Raises `MalformedInput` when an array is broken (a missing comma, an unclosed bracket), after
    yielding the values before the break.
    """
    first = ""
    line = 1
    while True:
        ch = stream.read(1)
        if ch == "":
            return
        if ch == "\n":
            line += 1
        if not ch.isspace():
            first = ch
            break
    if first == "[":
        yield from _iter_array(_Lines(stream, line, first))
    else:
        yield from _iter_lines(first + stream.readline(), stream, line)


def _iter_lines(head: str, stream: IO[str], line: int) -> Iterator[Record | BadRecord]:
    text: str | None = head
    while text is not None:
        if text.strip():
            try:
                yield Record(line, json.loads(text))
            except ValueError as exc:
                yield BadRecord(line, f"invalid JSON: {exc}")
            except RecursionError:
                yield BadRecord(line, "invalid JSON: nested too deeply")
        line += 1
        nxt = stream.readline()
        text = nxt if nxt else None


class _Lines:
    """The stream in pieces of at most one line (and ``_CHUNK`` characters); ``line``: the current piece's."""

    def __init__(self, stream: IO[str], line: int, head: str) -> None:
        self._stream = stream
        self._pending = head
        self._next_line = line
        self.line = line

    def next_piece(self) -> bytes:
        """The next piece as UTF-8, empty at the end."""
        text = self._pending or self._stream.readline(_CHUNK)
        self._pending = ""
        self.line = self._next_line
        if text.endswith("\n"):
            self._next_line += 1
        return text.encode("utf-8")


def _iter_array(source: _Lines) -> Iterator[Record | BadRecord]:
    try:
        import ijson
    except ImportError:
        raise ImportError(
            "reading a JSON array needs ijson: pip install 'segment-exposure[cli]' (or export JSON lines)"
        ) from None

    done: list[Record] = []
    start: int | None = None

    def new_map() -> dict[str, Any]:
        # ijson makes each object when it reads its "{": the first one since the last event is the event's.
        nonlocal start
        if start is None:
            start = source.line
        return {}

    class Sink:
        """Where ijson sends each finished event."""

        def send(self, value: Any) -> None:
            nonlocal start
            done.append(Record(source.line if start is None else start, value))
            start = None

    parser = ijson.items_coro(Sink(), "item", map_type=new_map, use_float=True)
    try:
        while piece := source.next_piece():
            parser.send(piece)
            if done:
                yield from done
                done.clear()
        parser.close()
        yield from done
    except ijson.JSONError as exc:
        yield from done
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MalformedInput(source.line, reason.removeprefix("parse error: ")) from None
