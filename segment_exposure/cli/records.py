"""Reading Segment events from a file or stdin, one at a time, whatever the export format.

JSON lines and a single JSON array are both streamed, so memory stays flat on a large export; each
record carries the line it started on, for error messages a person can act on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

__all__ = ["BadRecord", "Record", "iter_records"]

_CHUNK = 1 << 16
_decoder = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class Record:
    line: int
    value: Any


@dataclass(frozen=True, slots=True)
class BadRecord:
    line: int
    error: str


def iter_records(stream: IO[str]) -> Iterator[Record | BadRecord]:
    """Yield each JSON value in ``stream`` (JSON lines, or one JSON array of values)."""
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
        yield from _iter_array(stream, line)
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


def _iter_array(stream: IO[str], line: int) -> Iterator[Record | BadRecord]:
    buf = ""
    pos = 0
    eof = False

    def fill() -> bool:
        nonlocal buf, pos, eof
        chunk = stream.read(_CHUNK)
        if not chunk:
            eof = True
            return False
        buf = buf[pos:] + chunk
        pos = 0
        return True

    expect_value = True
    while True:
        # Skip whitespace (counting lines) and one separating comma.
        while True:
            if pos >= len(buf) and not fill():
                yield BadRecord(line, "invalid JSON: the array is not closed with ']'")
                return
            ch = buf[pos]
            if ch == "\n":
                line += 1
            if ch.isspace():
                pos += 1
                continue
            break
        if ch == "]":
            return
        if ch == "," and not expect_value:
            pos += 1
            expect_value = True
            continue
        while True:
            try:
                value, end = _decoder.raw_decode(buf, pos)
            except ValueError as exc:
                if not eof and fill():
                    continue
                yield BadRecord(line, f"invalid JSON: {exc}")
                return
            except RecursionError:
                yield BadRecord(line, "invalid JSON: nested too deeply")
                return
            if end == len(buf) and not eof and fill():
                continue  # a number may continue in the next chunk: decode again with more text
            break
        yield Record(line, value)
        line += buf.count("\n", pos, end)
        pos = end
        expect_value = False
