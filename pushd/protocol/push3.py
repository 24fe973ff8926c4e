# -*- test-case-name: tests.test_protocol_push3 -*-
"""
Security PUSH 3.x: what access-control and face terminals (``DeviceType=acc``,
``pushver=3.x``) send and expect, next to the attendance protocol of the rest
of this package (``docs/push3.md``; the notes in
``spec/security-push-3x-notes.md``, cited as §n below).

Pure: no Twisted imports.  Five parts:

* **generation** -- :func:`is_push3`, :func:`push3_evidence`;
* **registration** -- :func:`parse_registry`, :func:`registry_reply`,
  :func:`push_options` / :func:`push_reply`, :func:`handshake_reply`,
  :func:`new_registry_code`, :func:`new_session_id`, :func:`parse_cookie`,
  :func:`token_valid`;
* **uploads** -- :func:`parse_rtlog` (events, and punches by the rule of
  :func:`classify_event`), :func:`parse_rtstate`, :func:`parse_tabledata`,
  :func:`parse_attphotos`, :func:`parse_querydata`, :func:`tabledata_reply`;
* **time** -- :func:`encode_time`, :func:`decode_time`, :func:`rtdata_time`;
* **commands** -- the 3.x dialect of :mod:`pushd.protocol.commands`:
  :func:`build3` and :data:`BUILDERS3` for the same kinds (plus a few 3.x
  only ones), record-based builders (:func:`user_update3`...),
  :func:`interpret3`; and remote verification (:func:`parse_auth_request`,
  :func:`auth_reply`).

Every parser takes bytes and raises only :class:`~pushd.errors.ProtocolError`.
Formatters of server values raise :class:`ValueError` (or
:class:`~pushd.protocol.commands.InvalidCommand` for commands) when a value
would break the line structure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import string
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import wraps
from types import MappingProxyType
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from pushd.errors import ProtocolError

# The 2.x modules' private helpers are shared on purpose: 3.x records are
# split, decoded and checked exactly as 2.x ones are.
from pushd.protocol.cdata import (
    _biodata,
    _biophoto,
    _errorlog,
    _Keyed,
    _payload,
    _require,
    _split_keyed,
    _user,
    _userpic,
    _with_raw,
    parse_time,
    split_lines,
)
from pushd.protocol.commands import (
    _CHECKSUM,
    _OPTION_KEY,
    BUILDERS,
    Built,
    InvalidCommand,
    Outcome,
    Pairs,
    Time,
    Value,
    _base64,
    _call,
    _card,
    _code,
    _delete,
    _describe,
    _extras,
    _flag,
    _given,
    _int,
    _intact,
    _no_space,
    _number,
    _opt,
    _parameters,
    _pin,
    _record,
    _standard,
    _template,
    _text,
    _time,
    _token,
    _update,
    _verb,
    raw,
    update_idcard,
)
from pushd.protocol.photo import parse_photo_name
from pushd.protocol.records import (
    AccessEvent,
    AttLog,
    AttPhoto,
    BioPhoto,
    BioTemplate,
    CommandReply,
    DoorState,
    FingerTemplate,
    IdCard,
    OtherRecord,
    Record,
    Rejected,
    UserInfo,
    UserPhoto,
)
from pushd.protocol.replies import merge_options
from pushd.protocol.text import decode

__all__ = [
    "AUTH_WORDS",
    "BUILDERS3",
    "DEFAULT_CONFIG",
    "EVENT_NAMES",
    "MEANINGS3",
    "PUNCH_EVENTS",
    "REGISTRY_REFUSED",
    "SERVER_VERSION3",
    "VERIFY_MODES",
    "AuthRequest",
    "QueryData",
    "auth_reply",
    "biodata_update3",
    "biophoto_update3",
    "build3",
    "classify_event",
    "decode_time",
    "encode_time",
    "event_name",
    "finger_update3",
    "format_server_tz",
    "handshake_reply",
    "interpret3",
    "is_push3",
    "new_registry_code",
    "new_session_id",
    "parse_attphotos",
    "parse_auth_request",
    "parse_cookie",
    "parse_querydata",
    "parse_registry",
    "parse_rtlog",
    "parse_rtstate",
    "parse_tabledata",
    "push3_evidence",
    "push_options",
    "push_reply",
    "registry_reply",
    "row_count",
    "rtdata_time",
    "session_cookie",
    "tabledata_reply",
    "token_valid",
    "user_delete3",
    "user_update3",
    "userpic_update3",
]

RandBytes = Callable[[int], bytes]

# == generation (§1) ==========================================================

_MAJOR = re.compile(r"\A\s*(?:ver\s*)?([0-9]+)", re.IGNORECASE)
_PUSH3_ENDPOINTS = frozenset({"registry", "push"})
_PUSH3_TABLES = frozenset({"rtlog", "rtstate", "tabledata"})


def is_push3(push_version: str, device_type: str) -> bool:
    """
    Whether a handshake comes from a Security PUSH 3.x device (§1), first
    match wins: ``DeviceType`` ``acc`` (3.x) or ``att`` (2.x); else the major
    number of ``pushver``; else 2.x, the safe guess.
    """
    kind = device_type.strip().lower()
    if kind in ("acc", "att"):
        return kind == "acc"
    match = _MAJOR.match(push_version)
    return match is not None and match.group(1) == "3"


def push3_evidence(endpoint: str, table: str = "", cookie: bytes = b"") -> bool:
    """
    §1 rule 4: later evidence that a device speaks 3.x, whatever its
    handshake said -- a request to ``/iclock/registry`` or ``/iclock/push``
    (``endpoint`` is the last path segment, ``.aspx`` allowed), an upload to
    ``table=rtlog|rtstate|tabledata``, or a ``token=`` cookie.
    """
    name = endpoint.strip().strip("/").rsplit("/", 1)[-1].lower()
    if name.endswith(".aspx"):
        name = name[: -len(".aspx")]
    return (
        name in _PUSH3_ENDPOINTS
        or table.strip().lower() in _PUSH3_TABLES
        or "token" in parse_cookie(cookie)
    )


# == registration and configuration (§2) ======================================

#: The protocol pushd announces as ``PushProtVer`` (§1).
SERVER_VERSION3 = "3.1.2"
#: The body of a refused registration, sent with HTTP status 406 (§2.2).
REGISTRY_REFUSED = b"406"

#: The configuration of §2.3, in reply order (``SessionID`` goes after
#: ``Realtime``).  ``PushVersion`` repeats ``PushProtVer``: the vendor's own
#: example uses that name.
DEFAULT_CONFIG: Tuple[Tuple[str, str], ...] = (
    ("ServerVersion", SERVER_VERSION3),
    ("ServerName", "pushd"),
    ("PushProtVer", SERVER_VERSION3),
    ("PushVersion", SERVER_VERSION3),
    ("ErrorDelay", "60"),
    ("RequestDelay", "10"),
    ("TransTimes", "00:00;14:00"),
    ("TransInterval", "1"),
    ("TransTables", "User Transaction"),
    ("Realtime", "1"),
    ("TimeoutSec", "20"),
    ("BioPhotoFun", "1"),
    ("BioDataFun", "1"),
)

_ALPHANUMERIC = string.ascii_letters + string.digits
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _line_value(name: str, value: str) -> str:
    """A value written on a reply line: no control character may split the line."""
    bad = _CONTROL_CHARS.search(value)
    if bad is not None:
        raise ValueError(f"{name}: {_describe(bad.group())} is not allowed in a reply value")
    return value


def parse_registry(body: bytes, codec: str = "utf-8") -> Dict[str, str]:
    """
    Parse a comma list (§2.2 registry, §2.5 options, GET OPTIONS answers):
    ``key=value,key=value`` on one line (line breaks also separate pairs).

    §3.1 comma rule: a piece with no ``=``, or whose part before ``=`` is
    empty or holds a space, belongs to the previous value and is re-joined
    to it with ``,`` (``~OEMVendor=ACME CO., LTD.``).  Values are kept
    exactly (empty ones too); a repeated key keeps its last value.

    :raises ProtocolError: when the body holds text but no ``key=value`` pair.
    """
    text, _ = decode(body, codec)
    pairs: Dict[str, str] = {}
    last: Optional[str] = None
    for line in text.split("\n"):
        line = line[:-1] if line.endswith("\r") else line
        if not line.strip():
            continue
        for piece in line.split(","):
            key, eq, value = piece.partition("=")
            if eq and key and " " not in key:
                pairs[key] = value
                last = key
            elif last is not None:
                pairs[last] += "," + piece
            elif eq and key.strip():
                last = key.strip()
                pairs[last] = value
    if text.strip() and not pairs:
        raise ProtocolError("comma list holds no key=value pair")
    return pairs


def registry_reply(registry_code: str) -> bytes:
    """The answer to an accepted ``POST /iclock/registry``: ``RegistryCode=<code>``."""
    return b"RegistryCode=" + _line_value("RegistryCode", registry_code).encode("utf-8")


def session_cookie(session_id: str) -> bytes:
    """The ``Set-Cookie`` value the vendor server sends with the registry reply (§2.2)."""
    value = _line_value("SessionID", session_id)
    if any(ch in value for ch in " ;,"):
        raise ValueError("SessionID: must not contain a space, ';' or ','")
    return f"JSESSIONID={value}; Path=/; HttpOnly".encode("ascii", "replace")


def _lookup(mapping: Mapping[str, str], name: str) -> str:
    """``mapping[name]`` with the name matched case-insensitively; ``""`` when absent."""
    if name in mapping:
        return mapping[name]
    folded = name.lower()
    for key, value in mapping.items():
        if key.lower() == folded:
            return value
    return ""


def push_options(
    session_id: str,
    registry: Optional[Mapping[str, str]] = None,
    settings: Optional[Mapping[str, str]] = None,
) -> List[Tuple[str, str]]:
    """
    The configuration lines of ``/iclock/push`` (§2.3), in order.

    :param session_id: the SessionID issued at registration (the token's input).
    :param registry: the device's registry map (:func:`parse_registry`):
        its ``MultiBioDataSupport``/``MultiBioPhotoSupport`` lists are echoed,
        ``IRTempUnitTrans=0`` is added when it has ``IRTempDetectionFunOn=1``
        and ``SvrNSLevel`` echoes its ``DevNSLevel``.
    :param settings: per-device overrides (``RequestDelay``, ``PushProtVer``
        ``3.0.1``...); each replaces its default in place, new keys are
        appended.  Overriding ``PushProtVer`` also sets ``PushVersion``.
    :raises ValueError: a key or value holding a control character, or an
        empty key.
    """
    device = registry or {}
    overrides = dict(settings or {})
    pairs = list(DEFAULT_CONFIG)
    pairs.insert([key for key, _ in pairs].index("Realtime") + 1, ("SessionID", session_id))
    for key in ("MultiBioDataSupport", "MultiBioPhotoSupport"):
        value = _lookup(device, key).strip()
        if value:
            pairs.append((key, value))
    if _lookup(device, "IRTempDetectionFunOn").strip() == "1":
        pairs.append(("IRTempUnitTrans", "0"))
    level = _lookup(device, "DevNSLevel").strip()
    if level:
        pairs.append(("SvrNSLevel", level))
    if "PushProtVer" in overrides and "PushVersion" not in overrides:
        overrides["PushVersion"] = overrides["PushProtVer"]
    merged = merge_options(pairs, overrides)
    for key, value in merged:
        if not key.strip() or "=" in key:
            raise ValueError(f"setting name {key!r} is empty or holds '='")
        _line_value(key, key)
        _line_value(key, value)
    return merged


def push_reply(options: Sequence[Tuple[str, str]]) -> bytes:
    """The ``/iclock/push`` reply: ``key=value`` lines joined by CRLF, no terminator."""
    return "\r\n".join(f"{k}={_line_value(k, v)}" for k, v in options).encode("utf-8")


def handshake_reply(registry_code: Optional[str], options: Sequence[Tuple[str, str]] = ()) -> bytes:
    """
    The answer to ``GET /iclock/cdata?options=all`` of a 3.x device (§2.1):
    ``OK`` while it holds no RegistryCode; else ``registry=ok``,
    ``RegistryCode=<code>`` and the configuration lines (:func:`push_options`),
    joined by CRLF.
    """
    if registry_code is None:
        return b"OK"
    head = [("registry", "ok"), ("RegistryCode", registry_code)]
    return push_reply(head + list(options))


def new_registry_code(randbytes: RandBytes = os.urandom) -> str:
    """
    A RegistryCode: 32 characters ``[A-Za-z0-9]`` drawn without bias from
    ``randbytes`` (a CSPRNG by default; pass a fake to test).

    :raises ValueError: when ``randbytes`` keeps giving unusable bytes.
    """
    chars: List[str] = []
    for _ in range(64):
        for byte in randbytes(32):
            if byte < 248:  # 4 * 62: keep the draw uniform
                chars.append(_ALPHANUMERIC[byte % 62])
                if len(chars) == 32:
                    return "".join(chars)
    raise ValueError("randbytes gave too few usable bytes")


def new_session_id(randbytes: RandBytes = os.urandom) -> str:
    """A SessionID: 128 random bits as 32 upper-case hex digits."""
    data = randbytes(16)
    if len(data) != 16:
        raise ValueError("randbytes(16) must return 16 bytes")
    return data.hex().upper()


def parse_cookie(header: bytes) -> Dict[str, str]:
    """
    The ``Cookie`` header, leniently (§2.4): pairs split on ``;`` and ``,``,
    trimmed; names lower-cased; the first value of a repeated name wins.
    ``token=ab..,timestamp=2026-02-23-16-20-51`` gives both.
    """
    cookies: Dict[str, str] = {}
    for part in re.split("[;,]", header.decode("latin-1")):
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if eq and name:
            cookies.setdefault(name, value.strip())
    return cookies


def _md5_hex(text: str) -> bytes:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest().encode("ascii")


def token_valid(
    token: str,
    registry_code: str,
    sn: str,
    session_id: Optional[str],
    timestamp: Optional[str] = None,
) -> bool:
    """
    Whether a ``token`` cookie matches (§2.4, crypto.md §4.3): the hex MD5 of
    RegistryCode + SN + SessionID, or, when the device sent a ``timestamp``
    cookie, of RegistryCode + SN + timestamp (plain concatenation).  Case is
    ignored; both candidates are always compared, in constant time.

    The token proves nothing against an eavesdropper (its inputs travel in
    clear); callers record the result and enforce it only per device.
    """
    given = token.strip().lower().encode("utf-8", "replace")
    matched = False
    for suffix in (session_id, timestamp):
        if suffix:
            expected = _md5_hex(registry_code + sn + suffix)
            matched = hmac.compare_digest(given, expected) or matched
    return matched and bool(registry_code)


# == events (§3.2-3.4) =========================================================


def _names(table: str) -> Dict[int, str]:
    """``code meaning`` lines of the §3.3 table, as a dict."""
    names = {}
    for line in table.strip().splitlines():
        code, _, meaning = line.strip().partition(" ")
        names[int(code)] = meaning
    return names


#: App. 2 and App. 19: what each rtlog ``event`` code means (§3.3).
EVENT_NAMES: Mapping[int, str] = MappingProxyType(
    _names(
        """
        0 verified, door opened
        1 verified during normal-open period
        2 first-person open
        3 multi-person open
        4 emergency password open
        5 opened during normal-open period
        6 linkage triggered
        7 alarm cancelled
        8 remote open
        9 remote close
        10 today's normal-open period disabled
        11 today's normal-open period enabled
        12 aux output opened remotely
        13 aux output closed remotely
        14 fingerprint open
        15 multi-person open (fingerprint)
        16 fingerprint in normal-open period
        17 card+fingerprint open
        18 first person (fingerprint)
        19 first person (card+fingerprint)
        20 operation interval too short
        21 outside the door's valid period
        22 invalid time period
        23 access denied (no privilege)
        24 anti-passback
        25 interlock
        26 multi-person: waiting
        27 not registered
        28 door-open timeout
        29 privilege expired
        30 wrong password
        31 fingerprint interval too short
        32 multi-person wait (fingerprint)
        33 fingerprint expired
        34 fingerprint not registered
        35 fingerprint outside valid period
        36 exit button outside valid period
        37 cannot close during normal-open period
        38 card reported lost
        39 blacklisted
        40 multi-person verification failed
        41 wrong verification mode
        42 wrong Wiegand format
        43 person locked out
        44 remote verification failed
        45 remote verification timed out
        47 command send failed
        48 multi-person failed (card)
        49 password outside valid period
        50 password interval too short
        51 multi-person wait (password)
        52 multi-person failed (password)
        53 password expired
        54 battery low
        55 replace battery now
        56 illegal operation
        57 backup power
        58 normal-open alarm
        59 illegal admin
        60 door locked from inside
        61 repeated verification
        62 user prohibited
        63 door locked down
        64 exit button outside its period
        65 aux input outside its period
        66 reader upgrade failed
        67 remote match ok, device unauthorised
        68 temperature too high, denied
        69 no mask, denied
        70 face server unreachable
        71 face server error
        72 call unanswered
        73 invalid QR code
        74 QR code expired
        75 combined verification timed out
        76 no fingerprint in TITAN mode
        77 network cable unplugged
        78 hotspot lost
        79 mobile network lost
        80 elevator floor button without privilege
        100 tamper
        101 duress password
        102 door forced open
        103 duress fingerprint
        104 invalid-card alarm
        105 cannot reach server
        106 battery power failed
        107 mains power failed
        108 cannot reach master controller
        109 reader tamper
        110 reader offline
        111 PoE power lost
        112 extension board offline
        113 illegal security level
        114 fire input open
        115 fire input short
        116 aux input line open
        117 aux input line short
        118 exit button line open
        119 exit button line short
        120 door sensor line open
        121 door sensor line short
        132 elevator emergency cancelled
        133 elevator emergency cannot be cancelled
        134 elevator restricted
        150 manual button short
        151 manual button open
        152 emergency button short
        153 emergency button open
        154 fire button short
        155 fire button open
        200 door opened
        201 door closed
        202 exit button
        203 multi-person open (card+fingerprint)
        204 normal-open period ended
        205 remote normal-open
        206 device started
        207 password open
        208 super user opened
        209 exit button while locked
        210 fire-alarm opening
        211 super user closed
        212 elevator control on
        213 elevator control off
        214 connected to server
        215 first card (password)
        216 password in normal-open period
        217 connected to master
        218 ID card passage
        219 verified while exit button held open
        220 aux input open
        221 aux input shorted
        222 remote verification succeeded
        223 remote verification
        224 doorbell
        225 aux input normal
        226 aux input triggered
        227 dual-open mode
        228 dual-close mode
        229 aux output scheduled open
        230 aux output scheduled close
        231 IPC linkage
        232 verification passed
        233 remote lock
        234 remote unlock
        235 reader upgraded
        236 reader tamper cleared
        237 reader online
        239 device call
        240 call ended
        241 linked snapshot
        242 linked recording
        243 fire input open
        244 fire input short
        245 hotspot connected
        246 mobile network connected
        247 extension board online
        248 cable plugged in
        249 elevator direct button
        250 floor button with privilege
        251 button cancelled by voice
        252 button pressed by voice
        254 extended numbering
        255 door status
        4000 fire normal-open ended
        4001 personnel communication normal
        4002 elevator configuration ok
        4003 report-lost ok
        4004 un-report-lost ok
        4005 voice lit close button
        4006 voice lit open button
        4007 green health code
        4008 mains restored
        4009 intercom call
        4010 intercom answered
        4011 intercom timeout
        4012 intercom rejected
        4013 intercom hung up
        5000 clutch fault
        5001 fire board fault
        5002 fire board power low
        5003 power supply fault
        5004 signal sync fault
        5005 motor overcurrent
        5006 board overcurrent
        5007 board overload
        5008 constant open signal
        5009 voice load fault
        5010 slave offline
        5011 slave link cut
        5012 belt broken
        5013 open solenoid fault
        5014 drop-arm solenoid fault
        5015 arm cannot rise
        5016 arm cannot drop
        5017 elevator configuration failed
        5018 report-lost failed
        5019 un-report-lost failed
        5020 card data failed
        5021 invalid QR code
        5022 health-code fetch failed
        6000 fire normal-open started
        6001 yellow health code
        6002 red health code
        6003 unknown health state
        6004 health-code anomaly
        6005 log 90 % full
        6006 reader short (485)
        6007 reader short (Wiegand)
        6008 switched to DC emergency power
        6009 back to AC power
        6010 emergency battery low
        """
    )
)

#: App. 3: the verification mode codes of ``verifytype`` and a user's ``verify`` (§3.4).
VERIFY_MODES: Mapping[int, str] = MappingProxyType(
    _names(
        """
        0 automatic
        1 fingerprint
        2 user ID
        3 password
        4 card
        5 finger or password
        6 finger or card
        7 card or password
        8 ID + finger
        9 finger + password
        10 card + finger
        11 card + password
        12 finger + password + card
        13 ID + finger + password
        14 (ID + finger) or (card + finger)
        15 face
        16 face + finger
        17 face + password
        18 face + card
        19 face + finger + card
        20 face + finger + password
        21 finger vein
        22 vein + password
        23 vein + card
        24 vein + password + card
        25 palm print
        26 palm + card
        27 palm + face
        28 palm + finger
        29 palm + finger + face
        200 other
        """
    )
)

#: §3.2: events that let a person through; with a PIN they are also punches.
PUNCH_EVENTS: FrozenSet[int] = frozenset(
    [*range(0, 6), *range(14, 20), 203, 207, 208, 215, 216, 218, 219, 222, 232]
)

_EVENT_CODE = re.compile(r"\A[0-9]{1,6}\Z")
_SMALL_INT = re.compile(r"\A[0-9]{1,10}\Z")


def event_name(code: int) -> str:
    """The meaning of an event code (§3.3); ``unknown event`` for codes not in the table."""
    return EVENT_NAMES.get(code, "unknown event")


def _has_person(pin: str) -> bool:
    return pin.strip() not in ("", "0")


def classify_event(code: int, pin: str) -> str:
    """
    §3.2, as pushd applies it: ``"punch"`` when a person (``pin`` neither
    empty nor ``0``) passed (``code`` in :data:`PUNCH_EVENTS`); ``"denied"``
    when a person was refused (20-99); ``"event"`` for everything else (door,
    alarm, device, power; and any event without a person).
    """
    if not _has_person(pin):
        return "event"
    if code in PUNCH_EVENTS:
        return "punch"
    if 20 <= code <= 99:
        return "denied"
    return "event"


@dataclass(frozen=True)
class _EventKeys:
    """Where an event-shaped record keeps its values: rtlog and transaction rows differ."""

    time: str
    pin: str
    card: str
    door: str
    event: str
    inout: str
    verify: str
    index: str
    encoded_time: bool


_RTLOG = _EventKeys(
    "time", "pin", "cardno", "eventaddr", "event", "inoutstatus", "verifytype", "index", False
)
_TRANSACTION = _EventKeys(
    "time_second", "pin", "cardno", "doorid", "eventtype", "inoutstate", "verified", "index", True
)


def _event_time(value: str, encoded: bool) -> str:
    """:raises ValueError: an unreadable time."""
    text = value.strip()
    if not encoded:
        return parse_time(text.encode("utf-8"))
    if not _SMALL_INT.match(text):
        raise ValueError("not an encoded time")
    return decode_time(int(text)).isoformat()


def _event_records(rec: _Keyed, line: bytes, table: str, keys: _EventKeys) -> List[Record]:
    """An :class:`AccessEvent`, and an :class:`AttLog` when :func:`classify_event` says punch."""
    try:
        when = _event_time(rec.get(keys.time), keys.encoded_time)
    except ValueError:
        return [Rejected(table, line, f"invalid {keys.time}")]
    code_text = rec.get(keys.event).strip()
    if not _EVENT_CODE.match(code_text):
        return [Rejected(table, line, f"invalid {keys.event}")]
    code = int(code_text)
    pin = rec.get(keys.pin).strip()
    inout = rec.get(keys.inout).strip()
    verify = rec.get(keys.verify).strip()
    raw = line if rec.lossy else None
    records: List[Record] = [
        AccessEvent(
            time=when,
            pin=pin,
            card=rec.get(keys.card).strip(),
            door=rec.get(keys.door).strip(),
            event=str(code),
            event_name=event_name(code),
            inout=inout,
            verify=verify,
            index=rec.get(keys.index).strip(),
            fields=rec.fields(),
            raw=raw,
        )
    ]
    if classify_event(code, pin) == "punch":
        used = {keys.time, keys.pin, keys.inout, keys.verify}
        extra = tuple(f"{k}={v}" for k, v in rec.pairs if k.lower() not in used)
        punch = AttLog(pin, when, status=inout, verify=verify, workcode="", extra=extra, raw=raw)
        records.append(punch)
    return records


def _keyed3(line: bytes, table: str, codec: str) -> Union[_Keyed, Rejected]:
    rec = _split_keyed(line, codec, bare=True)
    if rec is None or not rec.pairs:
        return Rejected(table, line, "not a key=value record")
    return rec


def parse_rtlog(body: bytes, codec: str = "utf-8") -> List[Record]:
    """
    Parse a ``table=rtlog`` body (§3.2): one :class:`AccessEvent` per line
    (every event: door, alarm, device and verification), followed by an
    :class:`AttLog` when the line is a punch by :func:`classify_event`.

    The punch carries ``status`` = ``inoutstatus``, ``verify`` =
    ``verifytype``, an empty ``workcode``, and in ``extra`` every other field
    of the line as ``key=value`` text in the order sent (``cardno=0``,
    ``eventaddr=1``, ``event=3``, ``index=15``...).  Lines without a valid
    ``time`` or ``event`` are :class:`Rejected`.

    :raises ProtocolError: when the body holds lines and none is a record.
    """
    records: List[Record] = []
    for line in split_lines(body):
        rec = _keyed3(line, "rtlog", codec)
        if isinstance(rec, Rejected):
            records.append(rec)
        else:
            records.extend(_event_records(rec, line, "rtlog", _RTLOG))
    return _require(records, "rtlog")


def parse_rtstate(body: bytes, codec: str = "utf-8") -> List[Record]:
    """
    Parse a ``table=rtstate`` body (§3.5): one :class:`DoorState` per line,
    values as sent (hex bitmaps; ``door`` is undocumented).

    :raises ProtocolError: when the body holds lines and none is a record.
    """
    records: List[Record] = []
    for line in split_lines(body):
        rec = _keyed3(line, "rtstate", codec)
        if isinstance(rec, Rejected):
            records.append(rec)
            continue
        try:
            when = parse_time(rec.get("time").strip().encode("utf-8"))
        except ValueError:
            records.append(Rejected("rtstate", line, "invalid time"))
            continue
        records.append(
            DoorState(
                time=when,
                sensor=rec.get("sensor").strip(),
                relay=rec.get("relay").strip(),
                alarm=rec.get("alarm").strip(),
                door=rec.get("door").strip(),
                fields=rec.fields(),
                raw=line if rec.lossy else None,
            )
        )
    return _require(records, "rtstate")


# == tabledata (§3.6) ===========================================================

_FINGER_ID = re.compile(r"\A[0-9]{1,4}\Z")


def _templatev10(rec: _Keyed) -> FingerTemplate:
    """
    A legacy fingerprint: ``fingerid`` >= 16 marks a duress finger, stored as
    ``fid`` - 16 with ``valid`` 3 (the 2.x convention); ``fields`` keep the
    values as sent.
    """
    tmp, size = rec.get("template"), rec.get("size")
    fid, valid = rec.get("fingerid").strip(), rec.get("valid").strip()
    if _FINGER_ID.match(fid) and int(fid) >= 16:
        fid, valid = str(int(fid) - 16), "3"
    return FingerTemplate(
        pin=rec.get("pin").strip(),
        fid=fid,
        size=size,
        valid=valid,
        template=tmp,
        size_ok=_payload(tmp, size),
        fields=rec.fields("template"),
    )


def _idcard3(rec: _Keyed) -> IdCard:
    return IdCard(
        pin=rec.get("pin"),
        id_num=rec.get("ID_Num", "IDNum"),
        sn_num=rec.get("SN_Num", "SNNum"),
        name=rec.get("Name"),
        fields=rec.fields(),
    )


_TABLES: Dict[str, Callable[[_Keyed], Record]] = {
    "user": _user,
    "biodata": _biodata,
    "biophoto": _biophoto,
    "userpic": _userpic,
    "identitycard": _idcard3,
    "templatev10": _templatev10,
    "errorlog": _errorlog,
}
# Records that are meaningless without a PIN.
_NEEDS_PIN = frozenset({"user", "biodata", "biophoto", "userpic", "templatev10"})


def _table_line(line: bytes, table: str, codec: str) -> List[Record]:
    rec = _keyed3(line, table, codec)
    if isinstance(rec, Rejected):
        return [rec]
    kind = (rec.kind or table).lower()
    if kind == "transaction":
        return _event_records(rec, line, table, _TRANSACTION)
    builder = _TABLES.get(kind)
    if builder is None:
        return [OtherRecord(rec.kind or table, tuple(rec.pairs), raw=line if rec.lossy else None)]
    record = builder(rec)
    if kind in _NEEDS_PIN and not getattr(record, "pin", "").strip():
        return [Rejected(table, line, f"{kind} record without pin")]
    return [_with_raw(record, line) if rec.lossy else record]


def parse_tabledata(tablename: str, body: bytes, codec: str = "utf-8") -> List[Record]:
    """
    Parse ``POST /iclock/cdata?table=tabledata&tablename=<t>`` (§3.6), also
    the rows of a ``querydata`` answer (§4.8).  The table is the line's
    prefix (``user ``, ``biodata ``...) or, without one, ``tablename``:

    ``user`` -> :class:`UserInfo` (``cardno`` is ``card``; every field in
    ``fields``) · ``biodata`` -> :class:`BioTemplate` · ``biophoto`` ->
    :class:`BioPhoto` · ``userpic`` -> :class:`UserPhoto` ·
    ``identitycard`` -> :class:`IdCard` · ``templatev10`` ->
    :class:`FingerTemplate` · ``errorlog`` -> :class:`ErrorLog` ·
    ``transaction`` -> :class:`AccessEvent` (+ :class:`AttLog`, as rtlog;
    ``time_second`` decoded) · ``ATTPHOTO`` -> :class:`AttPhoto` metadata
    (use :func:`parse_attphotos` for the image bytes) · anything else ->
    :class:`OtherRecord`.  Count the device's rows with :func:`row_count`.

    :raises ProtocolError: when the body holds lines and none is a record.
    """
    table = tablename.strip()
    if table.lower() == "attphoto":
        photos = parse_attphotos(body, codec, table)
        return [item if isinstance(item, Rejected) else item[0] for item in photos]
    records: List[Record] = []
    for line in split_lines(body):
        records.extend(_table_line(line, table, codec))
    return _require(records, table)


PhotoRow = Union[Tuple[AttPhoto, bytes], Rejected]


def _attphoto(line: bytes, table: str, codec: str) -> PhotoRow:
    rec = _keyed3(line, table, codec)
    if isinstance(rec, Rejected):
        return rec
    name = rec.get("pin").strip()
    if not name:
        return Rejected(table, line, "photo without pin= (its file name)")
    try:
        image = base64.b64decode("".join(rec.get("photo").split()), validate=True)
    except (binascii.Error, ValueError):
        return Rejected(table, line, "photo= is not base64")
    if not image:
        return Rejected(table, line, "photo without image bytes")
    when, photo_type, pin, id_num = parse_photo_name(name)
    meta = AttPhoto(
        name=name,
        time=when,
        photo_type=photo_type,
        pin=pin,
        id_num=id_num,
        size=rec.get("size").strip(),
        stored_size=len(image),
        sha256=hashlib.sha256(image).hexdigest(),
        headers=rec.fields("photo"),
    )
    return meta, image


def parse_attphotos(body: bytes, codec: str = "utf-8", table: str = "ATTPHOTO") -> List[PhotoRow]:
    """
    Parse ``tablename=ATTPHOTO`` (§3.6): ``pin=<file name><TAB>sn=<SN><TAB>
    size=<n><TAB>photo=<base64>`` per line, no prefix.

    :returns: per line, ``(metadata, JPEG bytes)`` (``path`` still empty;
        time, type and PIN parsed from the name as for 2.x photos) or a
        :class:`Rejected` line.
    :raises ProtocolError: when the body holds lines and none is a photo.
    """
    rows = [_attphoto(line, table, codec) for line in split_lines(body)]
    if rows and all(isinstance(row, Rejected) for row in rows):
        first = rows[0]
        assert isinstance(first, Rejected)
        raise ProtocolError(f"no valid {table} record in body ({first.reason})")
    return rows


def row_count(records: Sequence[Record]) -> int:
    """
    How many device rows ``records`` stand for: the acknowledged count of a
    tabledata or querydata upload (§3.6).  Punches derived from an event are
    not rows of their own; quarantined (:class:`Rejected`) lines are.
    """
    return sum(1 for record in records if not isinstance(record, AttLog))


def tabledata_reply(tablename: str, accepted: int) -> bytes:
    """The tabledata / querydata acknowledgement: exactly ``<tablename as received>=<n>``."""
    if accepted < 0:
        raise ValueError("accepted: must not be negative")
    return f"{_line_value('tablename', tablename)}={accepted}".encode()


# == querydata (§4.8) ============================================================


@dataclass(frozen=True)
class QueryData:
    """
    One ``POST /iclock/querydata`` packet: the answer to a ``DATA COUNT``,
    ``DATA QUERY`` or ``GET OPTIONS`` command ``cmd_id``.

    ``type`` is ``count``, ``tabledata``, ``options``, ``vmtable`` (or an
    unknown type, kept, with nothing parsed); ``records`` the rows of
    ``tabledata``/``vmtable``; ``values`` the pairs of ``count``/``options``
    (``{"user": "5"}``); ``count``, ``pack_count`` and ``pack_index`` the URL
    counters (``None`` when absent or unreadable); ``reply`` what to answer
    once the packet is stored.
    """

    type: str
    cmd_id: str
    table: str
    count: Optional[int]
    pack_count: Optional[int]
    pack_index: Optional[int]
    records: Tuple[Record, ...] = ()
    values: Dict[str, str] = field(default_factory=dict)
    reply: bytes = b"OK"


def _counter(value: str) -> Optional[int]:
    text = value.strip()
    return int(text) if _SMALL_INT.match(text) else None


def parse_querydata(params: Mapping[str, str], body: bytes, codec: str = "utf-8") -> QueryData:
    """
    Parse a querydata packet (§4.8).

    :param params: the query parameters (names matched case-insensitively):
        ``type``, ``cmdid``, ``tablename``, ``count``, ``packcnt``, ``packidx``.
    :raises ProtocolError: a tabledata packet without ``tablename``, or a
        body that holds nothing parsable.
    """
    lowered = {key.lower(): value for key, value in params.items()}
    kind = lowered.get("type", "").strip().lower()
    table = lowered.get("tablename", "").strip()
    records: List[Record] = []
    values: Dict[str, str] = {}
    reply = b"OK"
    if kind in ("count", "options"):
        values = parse_registry(body, codec)
    elif kind == "tabledata":
        if not table:
            raise ProtocolError("querydata tabledata without tablename")
        records = parse_tabledata(table, body, codec)
        reply = tabledata_reply(table, row_count(records))
    elif kind == "vmtable":
        name = table.strip("[]") or "APList"
        records = parse_tabledata(name, body, codec)
        reply = tabledata_reply(name, row_count(records))
    return QueryData(
        type=kind,
        cmd_id=lowered.get("cmdid", "").strip(),
        table=table,
        count=_counter(lowered.get("count", "")),
        pack_count=_counter(lowered.get("packcnt", "")),
        pack_index=_counter(lowered.get("packidx", "")),
        records=tuple(records),
        values=values,
        reply=reply,
    )


# == time (§5.2) =================================================================

_EPOCH = datetime(1970, 1, 1)
_DAY = 86400


def encode_time(when: datetime) -> int:
    """
    ZKTeco's time encoding (App. 5), every month 31 days, every year 372,
    from 2000-01-01 00:00:00::

        ((year - 2000) * 372 + (month - 1) * 31 + (day - 1)) * 86400
            + hour * 3600 + minute * 60 + second

    :param when: a naive datetime (UTC for ``rtdata``, device-local wall time
        for ``SET OPTIONS DateTime``).
    :raises ValueError: before 2000.
    """
    if when.year < 2000:
        raise ValueError("the encoding starts in 2000")
    days = (when.year - 2000) * 372 + (when.month - 1) * 31 + (when.day - 1)
    return days * _DAY + when.hour * 3600 + when.minute * 60 + when.second


def decode_time(value: int) -> datetime:
    """
    The inverse of :func:`encode_time` (App. 6).

    :raises ValueError: a negative value or one that names no real date
        (day 30 of February...).
    """
    if value < 0:
        raise ValueError("negative encoded time")
    rest, second = divmod(value, 60)
    rest, minute = divmod(rest, 60)
    rest, hour = divmod(rest, 24)
    rest, day = divmod(rest, 31)
    years, month = divmod(rest, 12)
    return datetime(2000 + years, month + 1, day + 1, hour, minute, second)


def format_server_tz(tz_minutes: int) -> str:
    """``ServerTZ``: sign and four digits, ``+0800``, ``-0300``, ``+0530``, ``+0000``."""
    if not -24 * 60 < tz_minutes < 24 * 60:
        raise ValueError("tz_minutes: must be within a day of UTC")
    sign = "-" if tz_minutes < 0 else "+"
    hours, minutes = divmod(abs(tz_minutes), 60)
    return f"{sign}{hours:02d}{minutes:02d}"


def rtdata_time(now_utc_seconds: float, tz_minutes: int) -> bytes:
    """
    The ``GET /iclock/rtdata?type=time`` reply (§5.2):
    ``DateTime=<encoded UTC now>,ServerTZ=<±HHMM>``; ``tz_minutes`` is the
    device's offset from UTC (480 for UTC+08:00).
    """
    now = _EPOCH + timedelta(seconds=int(now_utc_seconds // 1))
    return f"DateTime={encode_time(now)},ServerTZ={format_server_tz(tz_minutes)}".encode()


# == commands: the 3.x dialect (§4) =============================================

_TABLE_NAME = re.compile(r"\A\[?[A-Za-z][A-Za-z0-9_]{0,31}\]?\Z")
_FIELD_NAME = re.compile(r"\A[A-Za-z~][A-Za-z0-9_]{0,31}\Z")
_DATE_VALUE = re.compile(r"\A(?:0|[0-9]{8,10})\Z")


def _byte(name: str, value: object, low: int = 0, high: int = 255) -> int:
    return _int(name, value, low, high)


def _control(kind: str, *octets: int) -> Built:
    """``CONTROL DEVICE AABBCCDD``: each byte as two upper-case hex digits (§4.3)."""
    return _standard(kind, "CONTROL DEVICE " + "".join(f"{octet:02X}" for octet in octets))


def _query3(kind: str, table: str, conditions: Pairs, fields: str = "*") -> Built:
    """``DATA QUERY tablename=<t>,fielddesc=<f>,filter=<cond|*>`` (§4.2)."""
    condition = _record(conditions) or "*"
    return _standard(kind, f"DATA QUERY tablename={table},fielddesc={fields},filter={condition}")


def _date_value(name: str, value: object) -> str:
    """A user's ``StartTime``/``EndTime``: ``0``, ``YYYYMMDD`` or encoded seconds (§3.6)."""
    return _token(name, value, _DATE_VALUE, "0, a date YYYYMMDD or encoded seconds")


def _option_value(name: str, value: object) -> str:
    text = _text(name, value)
    if "," in text:
        raise InvalidCommand(f"{name}: ',' is not allowed in an option value")
    return text


# -- control ---------------------------------------------------------------------


def reboot3() -> Built:
    """``CONTROL DEVICE 03000000``: restart this device."""
    return _control("reboot", 3, 0, 0, 0)


def unlock3(door: Value = 1, seconds: Value = 5) -> Built:
    """
    ``CONTROL DEVICE 01<door>01<seconds>``: drive door ``door``'s lock
    (0 = every door) for ``seconds`` (0 closes, 255 keeps it open).
    """
    return _control("unlock", 1, _byte("door", door), 1, _byte("seconds", seconds))


def unalarm3(door: Value = 0) -> Built:
    """``CONTROL DEVICE 02<door>0000``: cancel the alarm of one door (0 = all)."""
    return _control("unalarm", 2, _byte("door", door), 0, 0)


def normal_open3(door: Value = 0, on: Value = 1) -> Built:
    """``CONTROL DEVICE 04<door><on>00``: switch a door's normal-open mode on or off."""
    return _control("normal_open", 4, _byte("door", door), int(_flag("on", on)), 0)


# -- options -----------------------------------------------------------------------


def set_option3(key: Value, value: Value) -> Built:
    """``SET OPTIONS key=value`` (plural in 3.x)."""
    name = _token("key", key, _OPTION_KEY, "an option name (letters, digits, '_', '.', '~')")
    return _standard("set_option", f"SET OPTIONS {name}={_option_value('value', value)}")


def set_options3(options: Mapping[str, Value]) -> Built:
    """``SET OPTIONS k1=v1,k2=v2``: several options in one command."""
    if not isinstance(options, Mapping) or not options:
        raise InvalidCommand("options: must be a non-empty object")
    pairs = []
    for key, value in options.items():
        name = _token("options", key, _OPTION_KEY, "option names (letters, digits, '_', '.')")
        pairs.append(f"{name}={_option_value(f'options.{name}', value)}")
    return _standard("set_options", "SET OPTIONS " + ",".join(pairs))


def get_options3(names: Union[str, Sequence[str]]) -> Built:
    """``GET OPTIONS name1,name2``: the answer arrives on querydata ``type=options``."""
    items = names.split(",") if isinstance(names, str) else names
    if not isinstance(items, Sequence) or not items:
        raise InvalidCommand("names: must be a non-empty list of option names")
    what = "option names (letters, digits, '_', '.', '~')"
    checked = [
        _token("names", name.strip() if isinstance(name, str) else name, _OPTION_KEY, what)
        for name in items
    ]
    return _standard("get_options", "GET OPTIONS " + ",".join(checked))


def set_time3(time: Time) -> Built:
    """
    ``SET OPTIONS DateTime=<encoded>`` (§4.4, §5.2): ``time`` is the
    device-local wall time (our reading; unverified on hardware).
    """
    text = _time("time", time)
    try:
        encoded = encode_time(datetime.strptime(text, "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        raise InvalidCommand("time: must not be before 2000") from None
    return _standard("set_time", f"SET OPTIONS DateTime={encoded}")


# -- DATA UPDATE / DELETE ------------------------------------------------------------


def update_user3(
    pin: Value,
    name: Optional[Value] = None,
    privilege: Optional[Value] = None,
    password: Optional[Value] = None,
    card: Optional[Value] = None,
    group: Optional[Value] = None,
    start_time: Optional[Value] = None,
    end_time: Optional[Value] = None,
) -> Built:
    """
    ``DATA UPDATE user CardNo=..<TAB>Pin=..<TAB>Password=..<TAB>Group=..
    <TAB>StartTime=..<TAB>EndTime=..<TAB>Name=..<TAB>Privilege=..`` (§4.2),
    fields not given left out.  Privilege 0 user, 2 registrar, 6 admin, 10
    custom, 14 super admin; times 0 (unlimited), ``YYYYMMDD`` or encoded
    seconds per the device's ``DateFmtFunOn``.
    """
    return _update(
        "update_user",
        "user",
        [
            ("CardNo", _opt(_card, "card", card)),
            ("Pin", _pin("pin", pin)),
            ("Password", _opt(_text, "password", password)),
            ("Group", _opt(_number, "group", group)),
            ("StartTime", _opt(_date_value, "start_time", start_time)),
            ("EndTime", _opt(_date_value, "end_time", end_time)),
            ("Name", _opt(_text, "name", name)),
            ("Privilege", _opt(_number, "privilege", privilege, 0, 15)),
        ],
    )


def update_user_authorize3(
    pin: Value, doors: Value = 1, timezone: Value = 1, dev_id: Optional[Value] = None
) -> Built:
    """
    ``DATA UPDATE userauthorize Pin=..<TAB>AuthorizeTimezoneId=..<TAB>
    AuthorizeDoorId=..``: the doors (bit mask, door n = ``1 << (n-1)``) a user
    may open in time zone ``timezone`` (1 = always).  The vendor sends one
    with every user.
    """
    return _update(
        "update_user_authorize",
        "userauthorize",
        [
            ("Pin", _pin("pin", pin)),
            ("AuthorizeTimezoneId", _number("timezone", timezone)),
            ("AuthorizeDoorId", _number("doors", doors, 1)),
            ("DevID", _opt(_number, "dev_id", dev_id)),
        ],
    )


#: The 2.x IDCARD keys as the 3.x ``identitycard`` table spells them (§3.6).
_IDCARD3_KEYS = {
    "PIN": "Pin",
    "SNNum": "SN_Num",
    "IDNum": "ID_Num",
    "DNNum": "DN_Num",
    "ValidInfo": "Valid_Info",
    "AdditionalInfo": "Additional_Info",
    "FPTemplate1": "FP_Template1",
    "FPTemplate2": "FP_Template2",
}


@wraps(update_idcard)
def update_idcard3(*args: Any, **kwargs: Any) -> Built:
    """``DATA UPDATE identitycard Pin=..<TAB>SN_Num=..``: the 2.x builder's checks, §3.6 keys."""
    built = update_idcard(*args, **kwargs)
    fields = built.command.split(" ", 3)[3].split("\t")
    renamed = []
    for pair in fields:
        key, _, value = pair.partition("=")
        renamed.append(f"{_IDCARD3_KEYS.get(key, key)}={value}")
    return Built("DATA UPDATE identitycard " + "\t".join(renamed), built.kind, built.family)


def update_fingerprint3(pin: Value, fid: Value, template: str, valid: Value = 1) -> Built:
    """``DATA UPDATE templatev10 Pin=..<TAB>FingerID=..<TAB>Valid=..<TAB>Template=..``
    (legacy fingerprint; Valid 0, 1 or 3 = duress)."""
    valid_text = _number("valid", valid, 0, 3)
    if valid_text == "2":
        raise InvalidCommand("valid: must be 0, 1 or 3")
    return _update(
        "update_fingerprint",
        "templatev10",
        [
            ("Pin", _pin("pin", pin)),
            ("FingerID", _number("fid", fid, 0, 9)),
            ("Valid", valid_text),
            ("Template", _base64("template", template)),
        ],
    )


def update_biodata3(
    pin: Value,
    type: Value,
    template: str,
    major_ver: Value,
    minor_ver: Value = 0,
    no: Value = 0,
    index: Value = 0,
    valid: Value = 1,
    duress: Value = 0,
    format: Value = 0,
) -> Built:
    """
    ``DATA UPDATE biodata pin=..<TAB>no=..<TAB>index=..<TAB>valid=..<TAB>
    duress=..<TAB>type=..<TAB>majorver=..<TAB>minorver=..<TAB>format=..
    <TAB>tmp=..``: a unified template, keys lower case as the doc lists them
    (type 0-10, §3.6; format 0 ZK, 1 ISO, 2 ANSI).
    """
    minor = "" if minor_ver == "" else _number("minor_ver", minor_ver, 0, 999)
    return _update(
        "update_biodata",
        "biodata",
        [
            ("pin", _pin("pin", pin)),
            ("no", _number("no", no, 0, 255)),
            ("index", _number("index", index, 0, 255)),
            ("valid", _flag("valid", valid)),
            ("duress", _flag("duress", duress)),
            ("type", _number("type", type, 0, 10)),
            ("majorver", _number("major_ver", major_ver, 0, 999)),
            ("minorver", minor),
            ("format", _number("format", format, 0, 9)),
            ("tmp", _base64("template", template)),
        ],
    )


def _content_or_url(content: Optional[str], url: Optional[str]) -> Tuple[str, str, str, str]:
    """(size, content, format, url) for exactly one of base64 content or a URL."""
    if (content is None) == (url is None):
        raise InvalidCommand("content: give either content or url, not both or neither")
    if content is not None:
        size, text = _template("content", content)
        return size, text, "0", ""
    return "0", "", "1", _no_space("url", url)


def update_userpic3(pin: Value, content: Optional[str] = None, url: Optional[str] = None) -> Built:
    """``DATA UPDATE userpic pin=..<TAB>size=..<TAB>format=..<TAB>url|content=..``."""
    size, text, mode, link = _content_or_url(content, url)
    pairs: Pairs = [("pin", _pin("pin", pin)), ("size", size), ("format", mode)]
    pairs = [*pairs, ("url", link)] if mode == "1" else [*pairs, ("content", text)]
    return _update("update_userpic", "userpic", pairs)


def update_biophoto3(
    pin: Value,
    type: Value,
    content: Optional[str] = None,
    url: Optional[str] = None,
    post_back_tmp: Optional[Value] = None,
) -> Built:
    """
    ``DATA UPDATE biophoto PIN=..<TAB>Type=..<TAB>Size=..<TAB>Content=..
    <TAB>Format=..[<TAB>Url=..][<TAB>PostBackTmpFlag=..]``: a comparison
    photo, base64 (Format 0) or fetched from ``url`` (Format 1).
    """
    size, text, mode, link = _content_or_url(content, url)
    return _update(
        "update_biophoto",
        "biophoto",
        [
            ("PIN", _pin("pin", pin)),
            ("Type", _number("type", type, 0, 10)),
            ("Size", size),
            ("Content", text),
            ("Format", mode),
            ("Url", link or None),
            ("PostBackTmpFlag", _opt(_flag, "post_back_tmp", post_back_tmp)),
        ],
    )


def delete_user3(pin: Value) -> Built:
    """``DATA DELETE user Pin=..``: the user only (see :func:`user_delete3`)."""
    return _delete("delete_user", "user", [("Pin", _pin("pin", pin))])


def delete_user_authorize3(pin: Value) -> Built:
    """``DATA DELETE userauthorize Pin=..``."""
    return _delete("delete_user_authorize", "userauthorize", [("Pin", _pin("pin", pin))])


def delete_fingerprint3(pin: Value, fid: Optional[Value] = None) -> Built:
    """``DATA DELETE templatev10 Pin=..[<TAB>FingerID=..]``."""
    pairs = [("Pin", _pin("pin", pin)), ("FingerID", _opt(_number, "fid", fid, 0, 9))]
    return _delete("delete_fingerprint", "templatev10", pairs)


def delete_biodata3(pin: Value, type: Optional[Value] = None, no: Optional[Value] = None) -> Built:
    """``DATA DELETE biodata [Type=..<TAB>]pin=..[<TAB>no=..]`` (the doc's own spelling)."""
    if no is not None and type is None:
        raise InvalidCommand("no: needs type")
    pairs = [
        ("Type", _opt(_number, "type", type, 0, 10)),
        ("pin", _pin("pin", pin)),
        ("no", _opt(_number, "no", no, 0, 255)),
    ]
    return _delete("delete_biodata", "biodata", pairs)


def delete_userpic3(pin: Value) -> Built:
    """``DATA DELETE userpic pin=..``."""
    return _delete("delete_userpic", "userpic", [("pin", _pin("pin", pin))])


def delete_biophoto3(pin: Value) -> Built:
    """``DATA DELETE biophoto PIN=..``."""
    return _delete("delete_biophoto", "biophoto", [("PIN", _pin("pin", pin))])


def clear_log3() -> Built:
    """``DATA DELETE transaction *``: the access records."""
    return _standard("clear_log", "DATA DELETE transaction *")


def clear_biodata3() -> Built:
    """``DATA DELETE biodata *``: every unified template."""
    return _standard("clear_biodata", "DATA DELETE biodata *")


# -- DATA COUNT / QUERY --------------------------------------------------------------


def count_data3(table: Value, type: Optional[Value] = None) -> Built:
    """``DATA COUNT <table>[ Type=..]``: the answer arrives on querydata ``type=count``."""
    name = _token("table", table, _TABLE_NAME, "a table name")
    condition = _record([("Type", _opt(_number, "type", type, 0, 10))])
    return _standard("count_data", f"DATA COUNT {name} {condition}".rstrip())


def query_users3(pin: Optional[Value] = None) -> Built:
    """``DATA QUERY tablename=user,fielddesc=*,filter=*`` (or ``filter=Pin=..``)."""
    return _query3("query_users", "user", [("Pin", _opt(_pin, "pin", pin))])


def query_attlog3(
    start: Optional[Time] = None, end: Optional[Time] = None, new_only: Value = 0
) -> Built:
    """
    ``DATA QUERY tablename=transaction,fielddesc=*,filter=..``: every record
    (``*``), the ones not yet uploaded (``NewRecord``), or a period
    (``starttime=..<TAB>endtime=..``, honoured by some devices only; the
    time format is unverified).
    """
    newest = _flag("new_only", new_only) == "1"
    if (start is None) != (end is None):
        raise InvalidCommand("start: give both start and end, or neither")
    if newest and start is not None:
        raise InvalidCommand("new_only: cannot be combined with start and end")
    if newest:
        return _standard(
            "query_attlog", "DATA QUERY tablename=transaction,fielddesc=*,filter=NewRecord"
        )
    pairs: Pairs = []
    if start is not None:
        first, last = _time("start", start), _time("end", end)
        if first > last:
            raise InvalidCommand("end: must not be before start")
        pairs = [("starttime", first), ("endtime", last)]
    return _query3("query_attlog", "transaction", pairs)


def query_fingerprints3(pin: Optional[Value] = None, fid: Optional[Value] = None) -> Built:
    """``DATA QUERY tablename=templatev10,fielddesc=*,filter=..``."""
    if fid is not None and pin is None:
        raise InvalidCommand("fid: needs pin")
    pairs = [("Pin", _opt(_pin, "pin", pin)), ("FingerID", _opt(_number, "fid", fid, 0, 9))]
    return _query3("query_fingerprints", "templatev10", pairs)


def query_biodata3(type: Value, pin: Optional[Value] = None, no: Optional[Value] = None) -> Built:
    """``DATA QUERY tablename=biodata,fielddesc=*,filter=Type=..[<TAB>Pin=..[<TAB>No=..]]``."""
    if no is not None and pin is None:
        raise InvalidCommand("no: needs pin")
    pairs = [
        ("Type", _number("type", type, 0, 10)),
        ("Pin", _opt(_pin, "pin", pin)),
        ("No", _opt(_number, "no", no, 0, 255)),
    ]
    return _query3("query_biodata", "biodata", pairs)


def query_data3(
    table: Value, conditions: Optional[Mapping[str, Value]] = None, new_only: Value = 0
) -> Built:
    """
    Any ``DATA QUERY tablename=<table>,fielddesc=*,filter=..``: ``conditions``
    are ``Field=value`` pairs joined by TAB (AND), ``new_only`` asks for
    ``NewRecord``; neither gives ``*``.  ``[APList]`` is the Wi-Fi scan.
    """
    name = _token("table", table, _TABLE_NAME, "a table name")
    if _flag("new_only", new_only) == "1":
        if conditions:
            raise InvalidCommand("new_only: cannot be combined with conditions")
        return _standard("query_data", f"DATA QUERY tablename={name},fielddesc=*,filter=NewRecord")
    if conditions is not None and not isinstance(conditions, Mapping):
        raise InvalidCommand("conditions: must be an object")
    pairs: Pairs = [
        (_token("conditions", key, _FIELD_NAME, "field names"), _text(f"conditions.{key}", value))
        for key, value in (conditions or {}).items()
    ]
    if any(value is not None and "," in value for _, value in pairs):
        raise InvalidCommand("conditions: values must not contain ','")
    return _query3("query_data", name, pairs)


# -- enrolment and upgrade ------------------------------------------------------------


def enroll_bio3(
    type: Value, pin: Value, no: Value = 0, retry: Value = 3, overwrite: Value = 0, mode: Value = 1
) -> Built:
    """
    ``ENROLL_BIO TYPE=..<TAB>NO=..<TAB>PIN=..<TAB>RETRY=..<TAB>OVERWRITE=..
    <TAB>MODE=..`` (§4.6): mode 0 upload only, 1 keep on the device too.
    """
    pairs = [
        ("TYPE", _number("type", type, 0, 10)),
        ("NO", _number("no", no, 0, 255)),
        ("PIN", _pin("pin", pin)),
        ("RETRY", _number("retry", retry, 1, 10)),
        ("OVERWRITE", _flag("overwrite", overwrite)),
        ("MODE", _flag("mode", mode)),
    ]
    return _standard("enroll_bio", f"ENROLL_BIO {_record(pairs)}")


def upgrade3(url: str, checksum: Value, size: Value, method: Value = 1) -> Built:
    """
    ``UPGRADE`` (§4.5), ``checksum`` the MD5 of the file and ``size`` its
    length.  Method 1 ``checksum=..,url=..,size=..`` (served base64 by
    ``/iclock/file``), 2 ``type=1,checksum=..,size=..,url=..`` (raw file), 3
    ``checksum=..,size=..,url=..,supportsubcontracting=1`` (ranged download;
    needs ``SubcontractingUpgradeFunOn=1``).
    """
    link = _no_space("url", url)
    if "," in link:
        raise InvalidCommand("url: must not contain ','")
    digest = _token("checksum", checksum, _CHECKSUM, "1-64 letters or digits")
    length = _number("size", size)
    how = _int("method", method, 1, 3)
    texts = {
        1: f"UPGRADE checksum={digest},url={link},size={length}",
        2: f"UPGRADE type=1,checksum={digest},size={length},url={link}",
        3: f"UPGRADE checksum={digest},size={length},url={link},supportsubcontracting=1",
    }
    return Built(texts[how], "upgrade", "upgrade")


# -- from stored records ----------------------------------------------------------------


def _field(fields: Sequence[Tuple[str, str]], name: str) -> Optional[str]:
    for key, value in fields:
        if key.lower() == name:
            return _given(value.strip())
    return None


def user_update3(user: UserInfo) -> Built:
    """``DATA UPDATE user`` for a stored user (2.x or 3.x); empty numeric fields are left out."""
    return update_user3(
        user.pin,
        name=user.name,
        privilege=_given(user.privilege),
        password=user.password,
        card=user.card,
        group=_given(user.group),
        start_time=_field(user.fields, "starttime"),
        end_time=_field(user.fields, "endtime"),
    )


def finger_update3(fp: FingerTemplate) -> Built:
    """``DATA UPDATE templatev10`` for a stored fingerprint template."""
    _intact("template", fp.size_ok)
    return update_fingerprint3(fp.pin, fp.fid, fp.template, valid=_given(fp.valid) or 1)


def biodata_update3(bio: BioTemplate) -> Built:
    """``DATA UPDATE biodata`` for a stored unified template."""
    _intact("template", bio.size_ok)
    return update_biodata3(
        bio.pin,
        bio.type,
        bio.template,
        major_ver=bio.major_ver,
        minor_ver=bio.minor_ver,
        no=_given(bio.no) or 0,
        index=_given(bio.index) or 0,
        valid=_given(bio.valid) or 1,
        duress=_given(bio.duress) or 0,
        format=_given(bio.format) or 0,
    )


def userpic_update3(photo: UserPhoto) -> Built:
    """``DATA UPDATE userpic`` for a stored user photo."""
    _intact("content", photo.size_ok)
    return update_userpic3(photo.pin, content=photo.content)


def biophoto_update3(photo: BioPhoto) -> Built:
    """``DATA UPDATE biophoto`` (base64 mode) for a stored comparison photo."""
    _intact("content", photo.size_ok)
    return update_biophoto3(photo.pin, photo.type, content=photo.content)


def user_delete3(pin: Value) -> List[Built]:
    """
    Everything to queue to remove a user from a 3.x device, in the vendor's
    order (deleting the user leaves its privileges and templates behind):
    door privileges, templates, comparison photos, user photo, the user.
    """
    return [
        delete_user_authorize3(pin),
        delete_biodata3(pin),
        delete_biophoto3(pin),
        delete_userpic3(pin),
        delete_user3(pin),
    ]


# -- the registry -----------------------------------------------------------------------

_ALL_BUILDERS3: Tuple[Tuple[str, Callable[..., Built]], ...] = (
    ("reboot", reboot3),
    ("unlock", unlock3),
    ("unalarm", unalarm3),
    ("normal_open", normal_open3),
    ("set_option", set_option3),
    ("set_options", set_options3),
    ("get_options", get_options3),
    ("set_time", set_time3),
    ("clear_log", clear_log3),
    ("clear_biodata", clear_biodata3),
    ("count_data", count_data3),
    ("query_attlog", query_attlog3),
    ("query_users", query_users3),
    ("query_fingerprints", query_fingerprints3),
    ("query_biodata", query_biodata3),
    ("query_data", query_data3),
    ("update_user", update_user3),
    ("update_user_authorize", update_user_authorize3),
    ("update_idcard", update_idcard3),
    ("update_fingerprint", update_fingerprint3),
    ("update_biodata", update_biodata3),
    ("update_userpic", update_userpic3),
    ("update_biophoto", update_biophoto3),
    ("delete_user", delete_user3),
    ("delete_user_authorize", delete_user_authorize3),
    ("delete_fingerprint", delete_fingerprint3),
    ("delete_biodata", delete_biodata3),
    ("delete_userpic", delete_userpic3),
    ("delete_biophoto", delete_biophoto3),
    ("enroll_bio", enroll_bio3),
    ("upgrade", upgrade3),
    ("raw", raw),
)

#: Every 3.x builder by kind: the 2.x kinds that have a 3.x form, and 3.x-only ones.
BUILDERS3: Mapping[str, Callable[..., Built]] = MappingProxyType(dict(_ALL_BUILDERS3))

_SIGNATURES3 = {kind: _parameters(builder) for kind, builder in _ALL_BUILDERS3}


def build3(kind: str, params: Mapping[str, Any]) -> Built:
    """
    :func:`pushd.protocol.commands.build` for a 3.x device: the same kinds
    where a 3.x form exists (with the 3.x builder's parameters), plus
    ``normal_open``, ``set_options``, ``get_options``, ``set_time``,
    ``count_data``, ``query_data``, ``update_user_authorize`` and
    ``delete_user_authorize``.

    :raises InvalidCommand: a 2.x kind with no 3.x form (``"<kind>: not
        available for PUSH 3.x devices"``), an unknown kind, missing or
        unknown parameters, invalid values.
    """
    builder = BUILDERS3.get(kind) if isinstance(kind, str) else None
    if builder is None:
        if isinstance(kind, str) and kind in BUILDERS:
            raise InvalidCommand(f"{kind}: not available for PUSH 3.x devices")
        raise InvalidCommand(f"kind: unknown command kind {kind!r}")
    return _call(kind, builder, _SIGNATURES3[kind], params)


# -- results (§4.7) ----------------------------------------------------------------------

#: App. 1 of the 3.x doc: what a negative ``Return`` means.
MEANINGS3: Mapping[int, str] = MappingProxyType(
    {
        -1: "Send failed",
        -2: "No response",
        -3: "Out of buffer",
        -4: "Decompression failed",
        -5: "Bad read length",
        -6: "Bad decompressed length",
        -7: "Repeated command",
        -8: "Not authorised",
        -9: "CRC error",
        -10: "Data unparsable",
        -11: "Bad parameter",
        -12: "Execution error",
        -13: "Unknown command",
        -14: "Wrong communication password",
        -15: "File write failed",
        -16: "File read failed",
        -17: "No such file",
        -18: "No space left",
        -19: "Checksum error",
        -20: "Length mismatch",
        -21: "No platform set",
        -22: "Wrong platform",
        -23: "Firmware older than the installed one",
        -24: "Bad upgrade flag",
        -25: "File name is not emfw.cfg",
        -26: "Empty fingerprint",
        -27: "Fingerprint PIN not found",
        -28: "Door already in normal-open mode",
        -30: "Template algorithm version mismatch",
        -106: "Data over 4 MB",
        -108: "Invalid option",
        -612: "Option save failed",
        -614: "Alarm cancel failed",
        -615: "Restart failed",
        -616: "Normal-open failed",
        -618: "Bad URL",
        -620: "Bad data format",
        -621: "Unsupported field",
        -629: "Bad table name",
        -631: "Bad base64 length",
        -632: "Bad file name",
        -708: "Command not supported",
        -720: "Upgrade failed",
        -725: "Device timed out waiting",
        -726: "Server returned an HTTP error",
        -730: "Server did not answer",
        -801: "Malformed command line",
        -5000: "Accepted by the master controller; the sub-controller's result follows",
    }
)

_ROW_COMMANDS = (("DATA", "QUERY"), ("DATA", "COUNT"))


def _meaning3(code: int) -> str:
    if code in MEANINGS3:
        return f"{code}: {MEANINGS3[code]}"
    if -108 <= code <= -100:
        return f"{code}: Table, field or option error"
    return f"{code}: Unknown return code"


def interpret3(command: str, reply: CommandReply) -> Outcome:
    """
    What a 3.x device's result means (§4.7): ``Return`` >= 0 succeeded (for
    ``DATA QUERY``, ``DATA COUNT`` and ``ACCOUNT`` the number of rows, in
    ``data["rows"]``); < 0 failed; -5000 gives status ``"pending"``: the
    master controller accepted it and the sub-controller's result follows
    under the same ID, so the command stays open.
    """
    rc = reply.return_code.strip()
    code = _code(rc)
    data = _extras(reply)
    if code is None:
        reason = f"{rc}: Unreadable return code" if rc else "No return code"
        return Outcome("failed", rc, reason, data)
    if code == -5000:
        return Outcome("pending", rc, _meaning3(code), data)
    if code < 0:
        return Outcome("failed", rc, _meaning3(code), data)
    first, second = _verb(command or reply.cmd)
    if (first, second) in _ROW_COMMANDS or first.startswith("ACCOUNT"):
        return Outcome("succeeded", rc, f"{code}: Successful, {code} rows", {**data, "rows": code})
    return Outcome("succeeded", rc, f"{code}: Successful", data)


# == remote verification (§6) ===================================================

#: The ``AUTH=`` word of an allowed verification: editions disagree (§6).
AUTH_WORDS = ("SUCCEED", "SUCCESS")


@dataclass(frozen=True)
class AuthRequest:
    """
    A ``POST /iclock/cdata?AuthType=device`` request: the verification the
    device just made, waiting for the server's decision.

    ``addr_type`` says what made the event (1 device, 2 door, 3 reader, 4 aux
    input, 5 aux output) and ``event_addr`` its number; ``line`` is the event
    line as received, echoed in the reply (and what an ``IVerifier`` gets).
    """

    time: str
    pin: str
    card: str
    addr_type: str
    event_addr: str
    event: str
    inout: str
    verify: str
    line: bytes
    fields: Tuple[Tuple[str, str], ...] = ()

    @property
    def door(self) -> Optional[int]:
        """The door to open on success: ``event_addr`` when the source is a door (or unsaid)."""
        if self.addr_type not in ("", "2") or not _EVENT_CODE.match(self.event_addr):
            return None
        number = int(self.event_addr)
        return number if 1 <= number <= 255 else None


def parse_auth_request(body: bytes, codec: str = "utf-8") -> AuthRequest:
    """
    Parse a remote verification request (§6): one HT-separated line
    ``time=..<TAB>pin=..<TAB>cardno=..<TAB>addrtype=..<TAB>eventaddr=..
    <TAB>event=..<TAB>inoutstatus=..<TAB>verifytype=..``.

    :raises ProtocolError: no line, no ``key=value`` pairs or no valid time.
    """
    lines = split_lines(body)
    if not lines:
        raise ProtocolError("verification request without an event line")
    line = lines[0]
    rec = _split_keyed(line, codec, bare=True)
    if rec is None or not rec.pairs:
        raise ProtocolError("verification request is not a key=value line")
    try:
        when = parse_time(rec.get("time").strip().encode("utf-8"))
    except ValueError:
        raise ProtocolError("verification request without a valid time") from None
    return AuthRequest(
        time=when,
        pin=rec.get("pin").strip(),
        card=rec.get("cardno").strip(),
        addr_type=rec.get("addrtype").strip(),
        event_addr=rec.get("eventaddr").strip(),
        event=rec.get("event").strip(),
        inout=rec.get("inoutstatus").strip(),
        verify=rec.get("verifytype").strip(),
        line=line,
        fields=rec.fields(),
    )


def auth_reply(
    request: AuthRequest,
    allow: bool,
    tips: str = "",
    timed_out: bool = False,
    success_word: str = "SUCCEED",
    door: Optional[int] = None,
    open_seconds: int = 5,
) -> bytes:
    """
    The answer to a remote verification (§6), lines joined by CRLF:
    ``AUTH=<SUCCEED|FAILED|TIMEOUT>``, the request's event line, on success
    ``CONTROL DEVICE 01<door>01<seconds>`` (door: ``door`` or the request's
    :attr:`AuthRequest.door`; left out when neither names one), and
    ``TIPS=<text>`` when ``tips`` is given.

    :param success_word: ``SUCCEED`` (doc-cn, default) or ``SUCCESS`` (2021
        English doc), a per-device setting.
    :raises ValueError: a bad ``success_word``, or ``tips`` holding a
        control character.
    """
    if success_word not in AUTH_WORDS:
        raise ValueError(f"success_word: must be one of {', '.join(AUTH_WORDS)}")
    word = "TIMEOUT" if timed_out else success_word if allow else "FAILED"
    lines = [f"AUTH={word}".encode("ascii"), request.line]
    target = door if door is not None else request.door
    if allow and not timed_out and target is not None:
        try:
            lines.append(unlock3(target, open_seconds).command.encode("ascii"))
        except InvalidCommand as err:
            raise ValueError(str(err)) from None
    if tips:
        lines.append(("TIPS=" + _line_value("tips", tips)).encode("utf-8"))
    return b"\r\n".join(lines)
