"""Reading Segment's loosely typed values the way Segment's Amplitude destination reads them.

Why: Segment's destination validates each mapped field with type coercion (numbers and booleans become
strings, numeric strings become numbers) and reads dates with dayjs. An exposure whose *secondary* field is
odd must still land, so every reader here returns a repaired value or ``None`` (leave the field out); none
raises. The JavaScript Segment Function has the same readers; the golden vectors pin both.
"""

from __future__ import annotations

import functools
import json
import math
import re
from decimal import Decimal
from typing import Any

__all__ = [
    "MAX_DATE_MS",
    "js_string",
    "kind_of",
    "parse_time_ms",
    "read_number",
    "read_session_id",
    "read_string",
    "read_time_ms",
    "show",
]

#: JavaScript's Date range (8.64e15 ms either side of 1970); beyond it Segment reads no date.
MAX_DATE_MS = 8_640_000_000_000_000
_MAX_SAFE_INTEGER = 2**53 - 1

# ISO 8601 as Segment reads it: a date, optionally a time (seconds and fraction optional), optionally a zone.
# Segment's validator refuses "+02" offsets and "," fractions; we read them (a deliberate deviation).
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?",
    re.ASCII,
)
# RFC 2822 / HTTP dates, which JavaScript's Date (so Segment) also reads: "Tue, 24 Nov 2026 10:00:00 GMT".
_RFC2822 = re.compile(
    r"(?:[A-Za-z]{3},[ \t\n\r\f\v]*)?(\d{1,2})[ \t\n\r\f\v]+([A-Za-z]{3})[ \t\n\r\f\v]+(\d{4})"
    r"[ \t\n\r\f\v]+(\d{2}):(\d{2})(?::(\d{2}))?(?:[ \t\n\r\f\v]*(GMT|UTC|UT|Z|[+-]\d{4}))?",
    re.ASCII,
)
_SPACE = " \t\n\r\f\v"  # what both Python (re.ASCII) and the JavaScript port count as white space
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_NUMBER = re.compile(r"[ \t\n\r\f\v]*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[ \t\n\r\f\v]*", re.ASCII)


def js_string(value: float) -> str:
    """``String(value)`` in JavaScript for a finite number: what Segment makes of a numeric id.

    Integers beyond 2**53 go through a float first, as JavaScript holds them.
    """
    if value.__class__ is int:
        if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
            return str(value)
        value = float(value)
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) <= _MAX_SAFE_INTEGER:
        return str(int(value))
    sign = "-" if value < 0 else ""
    digits_tuple, exponent = Decimal(repr(abs(value))).as_tuple()[1:]
    digits = "".join(map(str, digits_tuple)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    # Position of the decimal point relative to the digits (ECMAScript's "n"), from repr's shortest digits.
    n = exponent + len("".join(map(str, digits_tuple)))
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e))
    return sign + text


def read_string(value: Any) -> str | None:
    """A string field: strings as they are, finite numbers and booleans in their JavaScript string form.

    ``None`` for null and for what Segment cannot make a string of (objects, arrays, NaN, infinities).
    """
    cls = value.__class__
    if cls is str:
        return value  # type: ignore[no-any-return]
    if cls is bool:
        return "true" if value else "false"
    if cls is int or (cls is float and math.isfinite(value)):
        return js_string(value)
    return None


def read_number(value: Any) -> float | int | None:
    """A number field (latitude, longitude): finite numbers, or numeric strings read as numbers."""
    cls = value.__class__
    if cls is int:
        return int(value)
    if cls is float:
        return float(value) if math.isfinite(value) else None
    if cls is str and _NUMBER.fullmatch(value):
        number = float(value)
        if math.isfinite(number):
            return int(number) if number.is_integer() and abs(number) <= _MAX_SAFE_INTEGER else number
    return None


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).

    A day past the month's end rolls into the next month, as JavaScript's ``Date.UTC`` (and so Segment) does.
    """
    if month <= 2:
        year -= 1
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@functools.lru_cache(maxsize=256)
def _utc_day(text: str) -> int | None:
    """Days since 1970-01-01 of ``YYYY-MM-DD``, or None; cached: the events of a batch share a few dates."""
    year, month, day = text[0:4], text[5:7], text[8:10]
    if text[4] != "-" or text[7] != "-" or not (year + month + day).isdigit() or not text.isascii():
        return None
    month_n, day_n = int(month), int(day)
    if not (1 <= month_n <= 12 and 1 <= day_n <= 31):
        return None
    return _days_from_civil(int(year), month_n, day_n)


def _iso_ms(text: str) -> int | None:
    # Fast path for what Segment's libraries send: YYYY-MM-DDTHH:MM:SS.mmmZ (or without the fraction).
    n = len(text)
    if (
        ((n == 24 and text[19] == ".") or n == 20)
        and text[-1] == "Z"
        and text[10] == "T"
        and text[13] == ":"
        and text[16] == ":"
    ):
        days = _utc_day(text[:10])
        clock = text[11:13] + text[14:16] + text[17:19]
        ms_text = text[20:23] if n == 24 else "0"
        digits = clock + ms_text
        if days is not None and digits.isdigit() and digits.isascii():
            hrs_mins, sec = divmod(int(clock), 100)
            hrs, mins = divmod(hrs_mins, 100)
            if hrs <= 23 and mins <= 59 and sec <= 59:
                return (((days * 24 + hrs) * 60 + mins) * 60 + sec) * 1000 + int(ms_text)
    match = _ISO.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, _zulu, sign, off_h, off_m = match.groups()
    month_n, day_n = int(month), int(day)
    hour_n = int(hour) if hour else 0
    minute_n = int(minute) if minute else 0
    second_n = int(second) if second else 0
    if not (1 <= month_n <= 12 and 1 <= day_n <= 31 and minute_n <= 59 and second_n <= 59):
        return None
    if hour_n > 24 or (hour_n == 24 and (minute_n or second_n or (fraction and int(fraction)))):
        return None
    millis = int((fraction + "00")[:3]) if fraction else 0  # cut, not rounded, as JavaScript does
    offset = 0
    if sign:
        off_hours, off_minutes = int(off_h), int(off_m or 0)
        if off_hours > 23 or off_minutes > 59:
            return None
        offset = (off_hours * 60 + off_minutes) * (-1 if sign == "-" else 1)
    days = _days_from_civil(int(year), month_n, day_n)
    return (((days * 24 + hour_n) * 60 + minute_n - offset) * 60 + second_n) * 1000 + millis


def _rfc2822_ms(text: str) -> int | None:
    match = _RFC2822.fullmatch(text)
    if match is None:
        return None
    day, month_name, year, hour, minute, second, zone = match.groups()
    month = _MONTHS.get(month_name.lower())
    day_n, hour_n, minute_n, second_n = int(day), int(hour), int(minute), int(second or 0)
    if month is None or not 1 <= day_n <= 31 or hour_n > 23 or minute_n > 59 or second_n > 59:
        return None
    offset = 0
    if zone and zone[0] in "+-":
        offset = (int(zone[1:3]) * 60 + int(zone[3:5])) * (-1 if zone[0] == "-" else 1)
    days = _days_from_civil(int(year), month, day_n)
    return (((days * 24 + hour_n) * 60 + minute_n - offset) * 60 + second_n) * 1000


def read_time_ms(value: Any) -> int | None:
    """Epoch milliseconds of a time Segment reads, or ``None`` when it is unreadable or zero.

    Read: ISO 8601 dates and date-times (no zone means UTC; ``Z`` or an offset ``+HH:MM``, ``+HHMM``,
    ``+HH``; any fraction, cut to milliseconds; ``T24:00`` and day overflow roll over as in JavaScript),
    RFC 2822 dates (``Tue, 24 Nov 2026 10:00:00 GMT``) and epoch-millisecond numbers (fractions cut).
    The number 0, empty strings and anything outside JavaScript's date range count as no time, as in Segment.
    """
    cls = value.__class__
    if cls is int or cls is float:
        if cls is float and not math.isfinite(value):
            return None
        ms = int(value)  # toward zero, as JavaScript's Date does
        if ms == 0 and not value:
            return None  # Segment skips a falsy time; the string "1970-01-01T00:00:00Z" is read
    elif cls is str:
        if not value or len(value) > 64:
            return None
        text = value.strip(_SPACE)
        read = _iso_ms(text)
        if read is None:
            read = _rfc2822_ms(text)
            if read is None:
                return None
        ms = read
    else:
        return None
    if abs(ms) > MAX_DATE_MS:
        return None
    return ms


def read_session_id(value: Any) -> int | None:
    """``integrations["Actions Amplitude"].session_id`` as Segment converts it, or ``None`` (leave it out).

    An all-digit string is its number; another string is read as a date (its epoch milliseconds); a number is
    cut to an integer. The number zero, and anything beyond what JavaScript holds exactly, give no session id.
    """
    cls = value.__class__
    if cls is str:
        if value.isdigit() and value.isascii():
            if len(value) > 16:
                return None
            number = int(value)
            return number if number <= _MAX_SAFE_INTEGER else None
        return read_time_ms(value)
    if cls is int or cls is float:
        return read_time_ms(value)
    return None


_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def show(value: Any) -> str:
    """A value as JSON (the sender's language) for error messages, cut so it cannot flood the logs."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    except RecursionError:
        text = f"{kind_of(value)} nested too deeply to show"
    return text if len(text) <= 80 else text[:77] + "..."


def kind_of(value: Any) -> str:
    """The JSON name of a value's type, for messages read by people who write JSON, not Python."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_time_ms(value: str) -> int:
    """Epoch milliseconds of an ISO 8601 / RFC 3339 date-time with a zone; raises ``ValueError``.

    Accepted: ``YYYY-MM-DDTHH:MM:SS`` (``T``, ``t`` or a space), an optional fraction of any number of
    digits after ``.`` or ``,`` (cut, not rounded, to milliseconds, as JavaScript's ``Date`` does), then
    ``Z``/``z`` or an offset ``+HH:MM``, ``+HHMM`` or ``+HH``. A time without a zone is refused: Segment
    always sends one, and guessing local time is how exposures land on the wrong day. Hand-written because
    it runs for every event and ``datetime.fromisoformat`` in 3.10 rejects ``Z`` and long fractions.
    """
    if value.__class__ is not str:
        raise ValueError(f"expected an ISO 8601 string, got {kind_of(value)}")
    s = value
    n = len(s)
    if (
        n < 20
        or s[4] != "-"
        or s[7] != "-"
        or s[10] not in "Tt "
        or s[13] != ":"
        or s[16] != ":"
        or not s.isascii()
    ):
        raise ValueError(f"{show(value)} is not YYYY-MM-DDTHH:MM:SS followed by Z or an offset")
    digits = s[0:4] + s[5:7] + s[8:10] + s[11:13] + s[14:16] + s[17:19]
    if not digits.isdigit():
        raise ValueError(f"{show(value)} has a non-digit in its date or time")
    rest_digits, second = divmod(int(digits), 100)
    rest_digits, minute = divmod(rest_digits, 100)
    rest_digits, hour = divmod(rest_digits, 100)
    rest_digits, day = divmod(rest_digits, 100)
    year, month = divmod(rest_digits, 100)

    rest = s[19:]
    millis = 0
    if rest[0] in ".,":
        last = rest[-1]
        if last in "Zz":
            cut = len(rest) - 1
        else:
            cut = max(rest.rfind("+"), rest.rfind("-"))
            if cut < 0:
                raise ValueError(f"{show(value)} has no zone: add Z (UTC) or an offset such as +02:00")
        fraction = rest[1:cut]
        if not fraction.isdigit():
            raise ValueError(f"{show(value)} has a malformed fraction of a second")
        millis = int((fraction + "00")[:3])
        rest = rest[cut:]

    offset_minutes = 0
    if rest == "Z" or rest == "z":
        pass
    elif rest and rest[0] in "+-":
        zone = rest[1:]
        if len(zone) == 5 and zone[2] == ":":
            zone = zone[:2] + zone[3:]
        if len(zone) == 2:
            zone += "00"
        if len(zone) != 4 or not zone.isdigit():
            raise ValueError(f"{show(value)} has a malformed offset: use Z, +HH:MM, +HHMM or +HH")
        off_h = int(zone[:2])
        off_m = int(zone[2:])
        if off_h > 23 or off_m > 59:
            raise ValueError(f"{show(value)} has an offset out of range")
        offset_minutes = off_h * 60 + off_m
        if rest[0] == "-":
            offset_minutes = -offset_minutes
    elif not rest:
        raise ValueError(f"{show(value)} has no zone: add Z (UTC) or an offset such as +02:00")
    else:
        raise ValueError(f"{show(value)} has unexpected text after the seconds")

    if year < 1 or not 1 <= month <= 12:
        raise ValueError(f"{show(value)} has a year or month out of range")
    dim = _DAYS_IN_MONTH[month]
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        dim = 29
    if not 1 <= day <= dim or hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"{show(value)} has a day, hour, minute or second out of range")

    days = _days_from_civil(year, month, day)
    return (((days * 24 + hour) * 60 + minute - offset_minutes) * 60 + second) * 1000 + millis
