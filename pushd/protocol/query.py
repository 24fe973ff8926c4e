# -*- test-case-name: tests.test_protocol_query -*-
"""
Request parameters: case-insensitive names (CONTRACT 2), a validated serial
number, the handshake of spec 5 and the ``INFO=`` list of spec 9.
"""

from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional

from pushd.errors import ProtocolError
from pushd.protocol.records import DeviceInfo, Handshake

__all__ = ["Params", "parse_handshake", "parse_info", "parse_params"]

# Serial numbers become directory names (photos/<SN>/), so only a safe alphabet.
_SN = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")


class Params:
    """
    The query parameters of one request, looked up case-insensitively.

    Only the first value of a repeated parameter counts.  Values are decoded
    as UTF-8 (with replacement: parameters are ASCII on every known firmware).
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def get(self, name: str, default: str = "") -> str:
        return self._values.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def items(self) -> Dict[str, str]:
        return dict(self._values)

    @property
    def sn(self) -> str:
        """The validated ``SN`` parameter.  :raises ProtocolError: when missing or unsafe."""
        sn = self.get("sn").strip()
        if not sn:
            raise ProtocolError("missing SN parameter")
        if not _SN.match(sn):
            raise ProtocolError("invalid SN parameter")
        return sn

    @property
    def table(self) -> str:
        return self.get("table").strip()


def parse_params(args: Mapping[bytes, List[bytes]]) -> Params:
    """Build :class:`Params` from ``twisted.web``-style ``request.args``."""
    values: Dict[str, str] = {}
    for raw_name, raw_values in args.items():
        name = raw_name.decode("utf-8", "replace").strip().lower()
        if name and raw_values and name not in values:
            values[name] = raw_values[0].decode("utf-8", "replace")
    return Params(values)


def parse_handshake(params: Params) -> Handshake:
    """The device's parameters of ``GET /iclock/cdata?options=all`` (spec 5, 3.x ``DeviceType``)."""
    return Handshake(
        sn=params.sn,
        push_version=params.get("pushver").strip(),
        language=params.get("language").strip(),
        pushcommkey=params.get("pushcommkey").strip(),
        device_type=params.get("devicetype").strip(),
        push_options_flag=params.get("pushoptionsflag").strip(),
    )


def parse_info(value: str) -> Optional[DeviceInfo]:
    """
    The ``INFO=`` list of spec 9: firmware, users, fingerprints, punches, IP,
    fingerprint and face algorithm versions, faces per enrolment, faces, and
    the function bitmap; firmware such as ZMM720 adds three more numbers,
    kept in ``extra``.  Values are kept as sent (``Ver 2.0.12-...`` included).

    :returns: ``None`` for an empty value.
    """
    if not value.strip():
        return None
    parts = [p.strip() for p in value.split(",")]
    parts += [""] * (10 - len(parts))
    return DeviceInfo(
        firmware=parts[0],
        user_count=parts[1],
        fp_count=parts[2],
        att_count=parts[3],
        ip=parts[4],
        fp_version=parts[5],
        face_version=parts[6],
        face_enroll_count=parts[7],
        face_count=parts[8],
        functions=parts[9],
        extra=tuple(parts[10:]),
    )
