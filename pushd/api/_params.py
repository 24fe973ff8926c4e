# -*- test-case-name: tests.test_api -*-
"""
Query-string parameters of the API, validated (pure: no Twisted imports).

Every parser raises :class:`~pushd.api._errors.BadRequest` with a reason
naming the parameter; an empty value (``?sn=``) counts as absent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Dict, List, Mapping, Optional, Sequence

from pushd.api._errors import BadRequest
from pushd.model import RecordQuery

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Args",
    "parse_limit",
    "parse_time",
    "parse_timezone",
    "record_query",
    "to_utc",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 10000

_TIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)


class Args:
    """The query string of a request, decoded: the last value of each name."""

    def __init__(self, raw: Mapping[bytes, Sequence[bytes]]) -> None:
        self._values: Dict[str, str] = {}
        self._all: Dict[str, List[str]] = {}
        for name, values in raw.items():
            try:
                key = name.decode("utf-8")
                decoded = [v.decode("utf-8") for v in values]
            except UnicodeDecodeError:
                raise BadRequest("the query string is not UTF-8") from None
            self._all[key] = decoded
            if decoded and decoded[-1] != "":
                self._values[key] = decoded[-1]

    def get(self, name: str) -> Optional[str]:
        """The value of ``name``, or ``None`` if absent or empty."""
        return self._values.get(name)

    def all(self, name: str) -> List[str]:
        """Every non-empty value of ``name``, comma lists split: ``?d=A&d=B,C`` -> A, B, C."""
        found: List[str] = []
        for value in self._all.get(name, []):
            found.extend(part.strip() for part in value.split(",") if part.strip())
        return found


def parse_limit(value: Optional[str], maximum: Optional[int] = MAX_LIMIT) -> Optional[int]:
    """``limit``: a whole number from 1 to ``maximum``; ``None`` when absent."""
    if value is None:
        return None
    try:
        limit = int(value, 10)
    except ValueError:
        limit = 0
    if limit < 1 or (maximum is not None and limit > maximum):
        bound = f"from 1 to {maximum}" if maximum is not None else "of at least 1"
        raise BadRequest(f"limit must be a whole number {bound}, not {value!r}")
    return limit


def parse_time(value: Optional[str], name: str, end: bool = False) -> Optional[str]:
    """
    ``since`` / ``until``: ``YYYY-MM-DD[THH:MM[:SS]]`` (a space may replace
    the ``T``; a trailing ``Z`` is kept), as ``YYYY-MM-DDTHH:MM:SS[Z]``.
    A date alone means its first second, or its last one when ``end``.
    """
    if value is None:
        return None
    text = value.strip()
    zulu = text.endswith(("Z", "z"))
    if zulu:
        text = text[:-1]
    for layout in _TIME_FORMATS:
        try:
            moment = datetime.strptime(text, layout)
        except ValueError:
            continue
        if end and layout == "%Y-%m-%d":
            moment = moment.replace(hour=23, minute=59, second=59)
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if zulu else "")
    raise BadRequest(f"{name} must be an ISO 8601 time (YYYY-MM-DDTHH:MM:SS), not {value!r}")


def record_query(args: Args, names: Sequence[str] = ("sn", "pin", "since", "until")) -> RecordQuery:
    """A :class:`RecordQuery` of the filters ``names``, ``cursor`` and ``limit`` (default 100)."""
    limit = parse_limit(args.get("limit"))
    return RecordQuery(
        sn=args.get("sn") if "sn" in names else None,
        pin=args.get("pin") if "pin" in names else None,
        since=parse_time(args.get("since"), "since") if "since" in names else None,
        until=parse_time(args.get("until"), "until", end=True) if "until" in names else None,
        status=args.get("status") if "status" in names else None,
        cursor=args.get("cursor"),
        limit=limit if limit is not None else DEFAULT_LIMIT,
    )


def parse_timezone(value: Optional[str]) -> Optional[int]:
    """
    A ``TimeZone`` option (spec 5) as minutes east of UTC: whole hours up to
    14, minutes beyond 60 (``330`` is UTC+5:30).  ``None`` if unreadable.
    """
    if value is None:
        return None
    try:
        number = int(str(value).strip(), 10)
    except ValueError:
        return None
    if abs(number) <= 14:
        return number * 60
    if 60 < abs(number) <= 14 * 60:
        return number
    return None


def to_utc(local: Optional[str], offset_minutes: Optional[int]) -> Optional[str]:
    """A device-local ``YYYY-MM-DDTHH:MM:SS`` as UTC ``...Z``; ``None`` if either is unknown."""
    if not local or offset_minutes is None:
        return None
    try:
        moment = datetime.strptime(local, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    return (moment - timedelta(minutes=offset_minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
