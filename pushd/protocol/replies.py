# -*- test-case-name: tests.test_protocol_replies -*-
"""
Everything pushd says to a device, as exact bytes: ``OK``, ``OK: n``, the
``GET OPTION FROM:`` block of spec 5, RemoteAtt answers of spec 14.
"""

from __future__ import annotations

from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

from pushd.protocol.records import FingerTemplate, UserInfo

__all__ = [
    "DEFAULT_DEVICE_VERSION",
    "SERVER_VERSION",
    "format_ok",
    "format_options",
    "format_remote_att",
    "format_timezone",
    "hybrid_support",
    "negotiate_version",
]

#: The protocol release pushd implements (Appendix 6).
SERVER_VERSION = "2.4.1"
#: What a device that sends no ``pushver`` speaks (Appendix 6).
DEFAULT_DEVICE_VERSION = "2.2.14"


def format_ok(count: Optional[int] = None) -> bytes:
    """``OK``, or ``OK: <count>`` for uploads that report how many records were processed."""
    return b"OK" if count is None else b"OK: %d" % count


def _version_key(version: str) -> Tuple[int, ...]:
    numbers = []
    for part in version.strip().split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def negotiate_version(device: str, server: str = SERVER_VERSION) -> str:
    """The lower of the device's ``pushver`` (2.2.14 when absent or unreadable) and ours."""
    device = device.strip() if _version_key(device) else DEFAULT_DEVICE_VERSION
    return device if _version_key(device) < _version_key(server) else server


def format_timezone(minutes: int) -> str:
    """
    Spec 5 ``TimeZone``: whole hours as hours (``8``, ``-5``), half and
    quarter hours in minutes (``330``, ``-210``, ``345``).
    """
    if minutes % 60 == 0:
        return str(minutes // 60)
    return str(minutes)


def hybrid_support(device: str, server: str) -> str:
    """
    Spec 3.1: the bitwise AND of two colon lists (``0:1:0:...``), padded with
    zeros to the longer one.  A non-numeric position counts as 0.
    """
    left = [p.strip() for p in device.split(":")] if device.strip() else []
    right = [p.strip() for p in server.split(":")] if server.strip() else []
    width = max(len(left), len(right))
    left += ["0"] * (width - len(left))
    right += ["0"] * (width - len(right))
    return ":".join("1" if a == "1" and b == "1" else "0" for a, b in zip(left, right))


def format_options(sn: str, options: Sequence[Tuple[str, str]]) -> bytes:
    """The reply of the initialization exchange (spec 5), LF separated."""
    lines = [f"GET OPTION FROM: {sn}"]
    lines.extend(f"{key}={value}" for key, value in options)
    return "\n".join(lines).encode("utf-8")


def _user_line(user: UserInfo) -> str:
    pairs = [
        ("PIN", user.pin),
        ("Name", user.name),
        ("Passwd", user.password),
        ("Card", user.card),
        ("Grp", user.group),
        ("TZ", user.tz),
        ("Pri", user.privilege),
    ]
    return "DATA UPDATE USERINFO " + "\t".join(f"{k}={v}" for k, v in pairs)


def _finger_line(fp: FingerTemplate) -> str:
    pairs = [
        ("PIN", fp.pin),
        ("FID", fp.fid),
        ("Size", fp.size),
        ("Valid", fp.valid),
        ("TMP", fp.template),
    ]
    return "DATA UPDATE FINGERTMP " + "\t".join(f"{k}={v}" for k, v in pairs)


def format_remote_att(
    user: Optional[UserInfo], fingerprints: Iterable[FingerTemplate], codec: str = "utf-8"
) -> bytes:
    """
    The answer to ``GET /iclock/cdata?table=RemoteAtt&PIN=`` (spec 14): the
    user's USERINFO line and one FINGERTMP line per template; ``OK`` when the
    user is unknown.
    """
    if user is None:
        return format_ok()
    lines: List[str] = [_user_line(user)]
    lines.extend(_finger_line(fp) for fp in fingerprints)
    return "\n".join(lines).encode(codec, "replace")


def merge_options(
    defaults: Sequence[Tuple[str, str]], overrides: Mapping[str, str]
) -> List[Tuple[str, str]]:
    """Server defaults in order, each replaced by a device's override; other overrides appended."""
    seen = set()
    merged = []
    for key, value in defaults:
        merged.append((key, str(overrides.get(key, value))))
        seen.add(key)
    merged.extend((k, str(v)) for k, v in overrides.items() if k not in seen)
    return merged
