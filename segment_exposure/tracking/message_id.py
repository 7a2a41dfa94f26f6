"""Deterministic message ids: the same exposure gets the same id in every process.

Segment drops a repeated ``messageId`` for about a day and the destination passes it on as Amplitude's
``insert_id`` (kept seven days), so two web workers that both send a user's first exposure produce one
event. The id is a keyed hash: it carries no raw user id, and without the write key it cannot be
reversed by guessing ids.
"""

from __future__ import annotations

import hashlib

__all__ = ["MESSAGE_ID_PREFIX", "exposure_message_id", "hash_key"]

MESSAGE_ID_PREFIX = "sx1-"
_SEP = "\x1f"


def hash_key(write_key: str | None) -> bytes:
    """The 32-byte hashing key for a Segment write key (any length; ``None`` gives a fixed key)."""
    return hashlib.sha256(b"segment-exposure:" + (write_key or "").encode()).digest()


def exposure_message_id(
    key: bytes,
    user_id: str | None,
    device_id: str | None,
    flag_key: str,
    variant: str | None,
    experiment_key: str | None,
    flag_version: object,
    window: int,
    generation: int,
) -> str:
    """A 36-character id for one exposure.

    ``window`` and ``generation`` come from the dedupe cache: the same exposure in the same window
    collides on purpose, while a variant change (a new generation) never collides with an earlier one.
    ``flag_version`` keeps exposures from different configurations of a flag apart across processes.
    """
    text = _SEP.join(
        (
            user_id or "",
            device_id or "",
            flag_key,
            "\x00" if variant is None else variant,
            experiment_key or "",
            "" if flag_version is None else str(flag_version),
            str(window),
            str(generation),
        )
    )
    # surrogatepass: a lone surrogate in an id must still hash, not raise on the background thread.
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16, key=key).hexdigest()
    return MESSAGE_ID_PREFIX + digest
