"""Finding the files of a Segment archive: local files and folders, ``s3://`` prefixes, stdin.

Why a catalogue first and reading second: Segment's S3 layout (``segment-logs/SOURCE/RECEIVED_DAY_MS/``)
says when each file's events were received, so the files are replayed in time order, and day folders
that cannot hold an event of the ``--since``/``--until`` window are skipped without being listed or read.
``--shard K/N`` then keeps the files whose name hashes to K, so N machines split an archive without
talking to each other (each name goes to exactly one shard, the same one on every machine).
"""

from __future__ import annotations

import os
import re
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .window import TimeWindow

__all__ = ["ArchiveFile", "Catalog", "Reader", "Shard", "day_of"]

#: A received-day folder: Unix time in milliseconds of a UTC midnight (13 digits until the year 2286).
_DAY = re.compile(r"^\d{12,14}$")


class Reader(Protocol):
    """An open file: what :func:`segment_exposure.replay.lines.iter_lines` reads from."""

    def read(self, size: int = ..., /) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ArchiveFile:
    """One file to replay: ``name`` for people, ``key`` for sharding, ``day_ms`` its received day."""

    name: str
    key: str
    day_ms: int | None
    opener: Callable[[], Reader] = field(repr=False, compare=False)

    def open(self) -> Reader:
        return self.opener()


def day_of(name: str) -> int | None:
    """The received day (epoch ms) a folder name stands for, or None if it is not a day folder."""
    if not _DAY.match(name):
        return None
    day = int(name)
    return day if day % 86_400_000 == 0 else None


@dataclass(frozen=True, slots=True)
class Shard:
    """``K/N``: this machine's share (K from 1 to N) of the archive's files."""

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Raises ValueError unless ``text`` is ``K/N`` with 1 <= K <= N."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise ValueError(f"--shard takes K/N (e.g. 1/4), got {text!r}")
        index, count = int(match[1]), int(match[2])
        if not 1 <= index <= count:
            raise ValueError(f"--shard K/N needs 1 <= K <= N, got {index}/{count}")
        return cls(index, count)

    def owns(self, key: str) -> bool:
        return self.count == 1 or zlib.crc32(key.encode("utf-8", "surrogateescape")) % self.count == (
            self.index - 1
        )


class Catalog:
    """The files named by the command's PATH arguments, in replay order, with what was skipped.

    ``s3_lister`` turns an ``s3://`` URL into files (:class:`segment_exposure.replay.s3.S3Archive`);
    it is given this catalogue's window and a callback for each skipped day folder.
    """

    def __init__(
        self,
        window: TimeWindow,
        shard: Shard,
        *,
        s3_lister: Callable[[str, TimeWindow, Callable[[str], None]], Iterator[ArchiveFile]] | None = None,
    ) -> None:
        self.window = window
        self.shard = shard
        self._s3_lister = s3_lister
        #: Day folders skipped unread because they cannot hold an event of the window.
        self.skipped_days: list[str] = []
        #: Files left to other shards.
        self.other_shards = 0

    def files(self, paths: Sequence[str]) -> Iterator[ArchiveFile]:
        """Each PATH in the order given; the files of a folder or prefix in received-day order.

        Raises:
            FileNotFoundError: a PATH does not exist (checked before anything is read).
        """
        for path in paths:
            if path != "-" and not path.startswith("s3://") and not os.path.exists(path):
                raise FileNotFoundError(path)
        for path in paths:
            for archive_file in self._expand(path):
                if self.shard.owns(archive_file.key):
                    yield archive_file
                else:
                    self.other_shards += 1

    def _expand(self, path: str) -> Iterator[ArchiveFile]:
        if path == "-":
            stdin = sys.stdin.buffer
            yield ArchiveFile("stdin", "-", None, lambda: _Unclosed(stdin))
        elif path.startswith("s3://"):
            if self._s3_lister is None:
                raise ValueError("s3:// paths need an S3 lister")
            yield from self._s3_lister(path, self.window, self.skipped_days.append)
        elif os.path.isdir(path):
            yield from sorted(self._walk(path), key=lambda f: (f.day_ms or 0, f.key))
        else:
            yield _local(path, os.path.basename(path), None)

    def _walk(self, root: str) -> Iterator[ArchiveFile]:
        """Every file under ``root`` (hidden ones aside), pruning day folders outside the window."""
        days = {root: day_of(os.path.basename(os.path.normpath(root)))}
        for folder, subfolders, names in os.walk(root):
            day = days[folder]
            kept = []
            for sub in sorted(subfolders):
                if sub.startswith("."):
                    continue
                sub_day = day_of(sub)
                full = os.path.join(folder, sub)
                if sub_day is not None and self.window.bounded and not self.window.may_hold(sub_day):
                    self.skipped_days.append(full)
                    continue
                days[full] = sub_day if sub_day is not None else day
                kept.append(sub)
            subfolders[:] = kept  # os.walk descends only into these
            for name in names:
                if name.startswith("."):
                    continue
                full = os.path.join(folder, name)
                yield _local(full, os.path.relpath(full, root).replace(os.sep, "/"), day)


class _Unclosed:
    """stdin: read, but left open for whoever owns it."""

    def __init__(self, stream: Reader) -> None:
        self._stream = stream

    def read(self, size: int = -1, /) -> bytes:
        return self._stream.read(size)

    def close(self) -> None:
        pass


def _local(path: str, key: str, day: int | None) -> ArchiveFile:
    return ArchiveFile(path, key, day, lambda: open(path, "rb"))  # the caller closes it
