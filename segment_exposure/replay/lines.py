"""Lines out of an archive file, gzipped or plain, streamed, keeping every complete line before a cut.

Why not ``gzip.GzipFile``: a truncated upload (Segment's S3 files can be cut short) raises ``EOFError``
from inside ``readline`` and the buffered text before the cut is lost with it; and decompressing whole
chunks, then splitting them, costs a third of what reading line by line does. Here the decompressor is
zlib's, fed in chunks, so memory stays at a chunk plus the longest line, and the end of a truncated or
corrupt stream becomes a :class:`Cut` that says after which line the readable part ended.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["CHUNK", "MAX_LINE_BYTES", "Cut", "LongLine", "iter_lines"]

#: Bytes read (and, for gzip, decompressed from) at a time.
CHUNK = 1 << 18
#: A line longer than this is skipped (and reported): no real Segment event comes near it.
MAX_LINE_BYTES = 32 * 1024 * 1024

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class Cut:
    """The file ends early: lines up to ``line - 1`` were read whole; ``line`` and after are lost."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class LongLine:
    """Line ``line`` was longer than :data:`MAX_LINE_BYTES` and was skipped."""

    line: int
    size: int


class _Broken(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def iter_lines(read: Callable[[int], bytes]) -> Iterator[tuple[int, bytes] | Cut | LongLine]:
    """Yield ``(line number, bytes without the newline)`` for each line of the stream ``read`` reads.

    ``read(n)`` returns up to ``n`` bytes, ``b""`` at the end (a binary file's ``read``). Gzip is
    recognised by its magic bytes, whatever the name; several concatenated gzip members are read as one
    stream. A truncated or corrupt gzip stream ends with a :class:`Cut` (the incomplete last line is not
    yielded); a plain file's last line needs no newline.

    Raises:
        OSError: reading failed (the caller reports the file).
    """
    first = read(CHUNK)
    while 0 < len(first) < 2:  # a reader may return less than asked: enough to see the magic bytes
        more = read(CHUNK)
        if not more:
            break
        first += more
    chunks = _gunzip(first, read) if first.startswith(_GZIP_MAGIC) else _plain(first, read)
    return _split(chunks)


def _plain(first: bytes, read: Callable[[int], bytes]) -> Iterator[bytes]:
    data = first
    while data:
        yield data
        data = read(CHUNK)


def _gunzip(first: bytes, read: Callable[[int], bytes]) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(wbits=31)  # a gzip header and trailer (CRC and length checked)
    data = first
    while True:
        try:
            out = decompressor.decompress(data)
        except zlib.error as exc:
            raise _Broken(f"corrupt gzip data ({exc})") from None
        if out:
            yield out
        if decompressor.eof:
            rest = decompressor.unused_data
            while len(rest) < 2:
                more = read(CHUNK)
                if not more:
                    break
                rest += more
            if not rest.strip(b"\x00"):  # the end (gzip itself ignores trailing zero padding)
                return
            if not rest.startswith(_GZIP_MAGIC):
                raise _Broken("data after the end of the gzip stream is not gzip")
            decompressor = zlib.decompressobj(wbits=31)
            data = rest
            continue
        data = read(CHUNK)
        if not data:
            raise _Broken("truncated gzip file (it ends before its end-of-stream marker)")


def _split(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes] | Cut | LongLine]:
    pending = b""
    line = 0
    skipping = 0  # bytes of an overlong line seen so far (0: not skipping)
    try:
        for chunk in chunks:
            if skipping:
                end = chunk.find(b"\n")
                if end < 0:
                    skipping += len(chunk)
                    continue
                line += 1
                yield LongLine(line, skipping + end)
                skipping = 0
                chunk = chunk[end + 1 :]
            if pending:
                chunk = pending + chunk
            parts = chunk.split(b"\n")
            pending = parts.pop()
            for part in parts:
                line += 1
                yield line, part
            if len(pending) > MAX_LINE_BYTES:
                skipping, pending = len(pending), b""
    except _Broken as exc:
        yield Cut(line + 1, exc.reason)
        return
    if skipping:
        yield LongLine(line + 1, skipping)
    elif pending:
        yield line + 1, pending
