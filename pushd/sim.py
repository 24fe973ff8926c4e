# -*- test-case-name: tests.test_sim -*-
"""
A virtual ZKTeco terminal: the device side of the Attendance PUSH protocol.

:class:`VirtualDevice` is what tests, benchmarks and users without hardware
drive a server with.  It speaks like the terminals whose traffic is kept in
``tests/vectors/real``: the same request lines and headers, TAB-separated
10-field ``ATTLOG`` lines, ``USER``/``FP``/``USERPIC`` lines in ``OPERLOG``,
``BIODATA`` lines, NUL-separated ``ATTPHOTO`` uploads, and ``ID=..&Return=..&CMD=..``
command replies.  It also fails like them: a record stays in the device's
buffer until the server answers ``OK`` for it, and goes out again after
``ErrorDelay`` seconds when the server does not.

``pushd-sim`` (:func:`main`) runs any number of them against a server::

    pushd-sim --url http://127.0.0.1:8080 --devices 10 --rate 2 --duration 30

and exits 0 only when everything the devices recorded was acknowledged.
"""

from __future__ import annotations

import argparse
import base64
import codecs
import math
import random
import re
import struct
import sys
import traceback
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Deque, Dict, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import quote

from treq.client import HTTPClient
from twisted.internet import defer, error, task
from twisted.internet.interfaces import IReactorTime
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseFailed,
)

__all__ = [
    "DeviceError",
    "DeviceState",
    "DeviceStats",
    "NotAuthorized",
    "Punch",
    "Rejected",
    "Reply",
    "Template",
    "Unreachable",
    "User",
    "VirtualDevice",
    "main",
    "make_jpeg",
    "parse_commands",
    "parse_options",
]

USER_AGENT = b"iClock Proxy/1.09"
PUSH_VERSION = "2.4.1"
FIRMWARE = "ZAM170-NF-Ver1.3.5"
OEM_VENDOR = "ZKTeco Co., Ltd."

#: Tables in the order a device empties its buffer: people before punches.
TABLES = ("OPERLOG", "BIODATA", "ATTLOG", "ATTPHOTO")

#: Biometric types (spec appendix 10) the simulator enrolls.
FINGERPRINT, FACE, PALM, VISIBLE_FACE = 1, 2, 8, 9

#: Seconds to wait after a failure until the server has sent its own ErrorDelay;
#: the SpeedFace in vector 001 retried its refused handshake every ~15 s.
DEFAULT_ERROR_DELAY = 15.0
DEFAULT_DELAY = 30.0

# Appendix 1 return codes.
OK = 0
BAD_PARAMETER = -1
PHOTO_SIZE_MISMATCH = -2
READ_WRITE_ERROR = -3
TEMPLATE_SIZE_MISMATCH = -9
NO_SUCH_USER = -10
BAD_TEMPLATE_FORMAT = -11
NOT_SUPPORTED = -1002

_MAX_BODY = 64 * 1024
_OK_COUNT = re.compile(rb"^OK\s*:?\s*(\d+)")
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_NETWORK_ERRORS = (
    error.ConnectError,
    error.ConnectionClosed,
    error.DNSLookupError,
    error.TimeoutError,
    defer.CancelledError,
    ResponseFailed,
    RequestTransmissionFailed,
)
_SAMPLE_NAMES = (
    "Ana Lima",
    "José Núñez",
    "Zoë Brandt",
    "Ayşe Demir",
    "Jorge Leon",
    "Kwame Mensah",
    "Li Wei",
    "Søren Holm",
    "Priya Nair",
    "Olga Ivanova",
)


class DeviceError(Exception):
    """
    The server did not take what the device sent.  Whatever it was stays in
    the device's buffer and is sent again later.
    """


class Unreachable(DeviceError):
    """No HTTP answer: connection refused, reset or timed out."""


class Rejected(DeviceError):
    """
    The server answered, but not with ``OK``.

    :ivar status: the HTTP status code.
    :ivar body: the reply body.
    """

    def __init__(self, what: str, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        first_line = body.strip().split(b"\n", 1)[0][:80].decode("utf-8", "replace")
        super().__init__(f"{what}: HTTP {status}" + (f" {first_line!r}" if first_line else ""))


class NotAuthorized(Rejected):
    """HTTP 401 (``Device not authorized``): the device handshakes again later."""


@dataclass(frozen=True)
class Punch:
    """One attendance record, as a terminal stores it."""

    pin: str
    time: datetime
    status: int = 0
    verify: int = 1
    workcode: str = ""
    mask: int = 0
    temperature: str = "36.5"
    index: int = 0

    def line(self) -> str:
        """
        :returns: the 10 TAB-separated fields real firmware sends (vector 009):
            PIN, time, status, verify, workcode, two reserved, mask flag,
            temperature, record index.
        """
        fields = (
            self.pin,
            self.time.strftime(_TIME_FORMAT),
            str(self.status),
            str(self.verify),
            self.workcode,
            "0",
            "0",
            str(self.mask),
            self.temperature,
            str(self.index),
        )
        return "\t".join(fields)


@dataclass(frozen=True)
class User:
    """A user enrolled on the device."""

    pin: str
    name: str = ""
    privilege: int = 0
    password: str = ""
    card: str = ""
    group: int = 1
    timezones: str = "0000000000000000"
    verify: int = -1
    vice_card: str = ""
    photo: Optional[bytes] = None

    def line(self) -> str:
        """:returns: the ``USER`` line of an ``OPERLOG`` upload (spec 11.5, vector 012)."""
        return "USER " + _keyed(
            ("PIN", self.pin),
            ("Name", self.name),
            ("Pri", str(self.privilege)),
            ("Passwd", self.password),
            ("Card", self.card),
            ("Grp", str(self.group)),
            ("TZ", self.timezones),
            ("Verify", str(self.verify)),
            ("ViceCard", self.vice_card),
            ("StartDatetime", "0"),
            ("EndDatetime", "0"),
        )

    def photo_line(self) -> str:
        """:returns: the ``USERPIC`` line of an ``OPERLOG`` upload (spec 11.13)."""
        content = base64.b64encode(self.photo or b"").decode("ascii")
        return "USERPIC " + _keyed(
            ("PIN", self.pin),
            ("FileName", f"{self.pin}.jpg"),
            ("Size", str(len(content))),
            ("Content", content),
        )


@dataclass(frozen=True)
class Template:
    """
    A biometric template.

    :ivar type: the biometric type of spec appendix 10 (1 fingerprint, 2 face,
        8 palm, 9 visible-light face).
    :ivar no: the finger number (0-9), the hand (palm) or 0 (faces).
    :ivar index: the template number for this finger, hand or face.
    """

    pin: str
    type: int = FINGERPRINT
    no: int = 0
    index: int = 0
    data: bytes = b""
    major: str = "10"
    minor: str = "0"
    valid: int = 1
    duress: int = 0
    format: int = 0

    @property
    def key(self) -> Tuple[str, int, int, int]:
        """What a newer template with the same key replaces."""
        return (self.pin, self.type, self.no, self.index)

    @property
    def legacy(self) -> bool:
        """
        Whether firmware sends this as an ``FP`` line in ``OPERLOG``: the
        ``FINGERTMP`` format carries fingerprint algorithms up to 10.0 only
        (spec 12.1.1.3); everything else goes as unified ``BIODATA``.
        """
        return self.type == FINGERPRINT and _int(self.major, 0) <= 10

    def fp_line(self) -> str:
        """:returns: the ``FP`` line of an ``OPERLOG`` upload (spec 11.9)."""
        tmp = base64.b64encode(self.data).decode("ascii")
        return "FP " + _keyed(
            ("PIN", self.pin),
            ("FID", str(self.no)),
            ("Size", str(len(tmp))),
            ("Valid", str(self.valid)),
            ("TMP", tmp),
        )

    def biodata_line(self) -> str:
        """:returns: the line of a ``BIODATA`` upload (spec 11.12, vector 005)."""
        return "BIODATA " + _keyed(
            ("Pin", self.pin),
            ("No", str(self.no)),
            ("Index", str(self.index)),
            ("Valid", str(self.valid)),
            ("Duress", str(self.duress)),
            ("Type", str(self.type)),
            ("MajorVer", self.major),
            ("MinorVer", self.minor),
            ("Format", str(self.format)),
            ("Tmp", base64.b64encode(self.data).decode("ascii")),
        )


@dataclass(frozen=True)
class Reply:
    """
    The device's answer to one command (spec 13).

    :ivar extra: text appended to ``CMD=..``: ``&key=value`` pairs, or
        ``\\n``-separated lines for ``INFO``.
    """

    id: str
    code: int
    cmd: str
    extra: str = ""

    def text(self) -> str:
        """:returns: ``ID=<id>&Return=<code>&CMD=<cmd>`` plus :attr:`extra`."""
        return f"ID={self.id}&Return={self.code}&CMD={self.cmd}{self.extra}"


@dataclass
class DeviceState:
    """What the terminal holds in its flash."""

    users: Dict[str, User] = field(default_factory=dict)
    templates: Dict[Tuple[str, int, int, int], Template] = field(default_factory=dict)
    attlogs: List[Punch] = field(default_factory=list)
    photos: List[Tuple[Punch, bytes]] = field(default_factory=list)
    biophotos: Dict[Tuple[str, str], bytes] = field(default_factory=dict)
    settings: Dict[str, str] = field(default_factory=dict)

    def count(self, *types: int) -> int:
        """:returns: the number of templates of the given biometric types."""
        return sum(1 for template in self.templates.values() if template.type in types)

    def delete_user(self, pin: str) -> None:
        """Remove a user with everything that belongs to them."""
        self.users.pop(pin, None)
        self.delete_templates(pin)
        self.biophotos = {k: v for k, v in self.biophotos.items() if k[0] != pin}

    def delete_templates(
        self, pin: str, kind: Optional[int] = None, no: Optional[int] = None
    ) -> None:
        """Remove a user's templates, optionally only of one biometric type and number."""
        self.templates = {
            key: template
            for key, template in self.templates.items()
            if not (
                template.pin == pin
                and (kind is None or template.type == kind)
                and (no is None or template.no == no)
            )
        }


@dataclass
class DeviceStats:
    """
    Counters of one device, or (from :meth:`total`) of many.

    ``sent`` and ``acknowledged`` count records per table, re-sends included.
    ``failures`` counts requests that were not acknowledged (each one is
    retried); ``mismatches`` counts ``OK: n`` answers whose ``n`` was not the
    number of records sent.
    """

    punches: int = 0
    requests: int = 0
    failures: int = 0
    polls: int = 0
    commands: int = 0
    mismatches: int = 0
    sent: Counter = field(default_factory=Counter)
    acknowledged: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)

    @classmethod
    def total(cls, many: Iterable[DeviceStats]) -> DeviceStats:
        """:returns: the sum of ``many``."""
        result = cls()
        for stats in many:
            result.punches += stats.punches
            result.requests += stats.requests
            result.failures += stats.failures
            result.polls += stats.polls
            result.commands += stats.commands
            result.mismatches += stats.mismatches
            result.sent.update(stats.sent)
            result.acknowledged.update(stats.acknowledged)
            result.errors.update(stats.errors)
        return result


def parse_options(body: bytes, sn: Optional[str] = None) -> Dict[str, str]:
    """
    Parse the server's answer to the handshake (spec 5).

    :param body: ``GET OPTION FROM: <SN>`` then ``key=value`` lines (LF or CRLF).
    :param sn: when given, the serial number the first line must name.
    :returns: the options, keys as the server spelled them.
    :raises ValueError: if the first line is not ``GET OPTION FROM:`` or names
        another serial number.
    """
    lines = body.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
    first = lines[0].strip()
    prefix = "GET OPTION FROM:"
    if not first.upper().startswith(prefix):
        raise ValueError(f"no {prefix!r} line: {first[:60]!r}")
    named = first[len(prefix) :].strip()
    if sn is not None and named and named != sn:
        raise ValueError(f"options for {named!r}, not {sn!r}")
    options: Dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition("=")
        if sep and key.strip():
            options[key.strip()] = value.strip()
    return options


def parse_commands(body: bytes, encoding: str = "utf-8") -> List[Tuple[str, str]]:
    """
    Parse a ``getrequest`` reply (spec 12).

    :returns: ``(id, command)`` for every ``C:<id>:<command>`` line; other
        lines (``OK``) are ignored.
    """
    commands: List[Tuple[str, str]] = []
    for line in body.decode(encoding, "replace").split("\n"):
        line = line.rstrip("\r")
        if not line.startswith("C:"):
            continue
        parts = line.split(":", 2)
        if len(parts) == 3:
            commands.append((parts[1].strip(), parts[2].lstrip(" ")))
    return commands


def make_jpeg(comment: bytes = b"") -> bytes:
    """
    Build a small baseline JPEG (an 8x8 grey square) carrying ``comment`` in a
    COM segment, so each photo is different.

    :returns: bytes starting with ``FFD8`` and ending with ``FFD9``.
    """

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">HH", 0xFF00 | marker, len(payload) + 2) + payload

    # A one-symbol Huffman table: code "0" for symbol 0 (DC difference 0, AC end of block).
    one_code = bytes([1] + [0] * 15 + [0])
    return b"".join(
        [
            b"\xff\xd8",
            segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
            segment(0xFE, comment[:60000]),
            segment(0xDB, b"\x00" + b"\x01" * 64),
            segment(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00"),
            segment(0xC4, b"\x00" + one_code),
            segment(0xC4, b"\x10" + one_code),
            segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
            b"\x3f",  # bits 0 (DC) 0 (EOB), padded with ones
            b"\xff\xd9",
        ]
    )


class VirtualDevice:
    """
    One simulated terminal.

    The upload methods put records in the device's buffer and send
    everything buffered; what the server does not acknowledge stays there
    (:meth:`pending`) and goes out with the next upload or :meth:`flush`.
    Failures raise a :class:`DeviceError`; :meth:`run` catches them and waits
    :attr:`error_delay` seconds like a real terminal.

    :param client: a treq ``HTTPClient`` (or ``treq.testing.StubTreq``).
    :param clock: the ``IReactorTime`` used for punch times, waits and timeouts.
    :param url: the server's base URL, e.g. ``http://127.0.0.1:8080``.
    :param sn: the serial number.
    :param encoding: codec of text the device sends and receives (user names).
    :param rng: source of PINs, names and template bytes; seed it for
        repeatable runs.
    :param error_delay: seconds to wait after a failure, instead of the
        server's ``ErrorDelay``.
    :param batch: most records per upload request.
    :param timeout: seconds to wait for an answer, or ``None``.
    """

    def __init__(
        self,
        client: Any,
        clock: IReactorTime,
        url: str,
        sn: str,
        *,
        encoding: str = "utf-8",
        rng: Optional[random.Random] = None,
        error_delay: Optional[float] = None,
        batch: int = 100,
        timeout: Optional[float] = None,
    ) -> None:
        self.sn = sn
        self.encoding = codecs.lookup(encoding).name
        self.state = DeviceState()
        self.stats = DeviceStats()
        #: What the last handshake returned (see :func:`parse_options`).
        self.server_options: Dict[str, str] = {}
        #: True until a handshake succeeds, and again after 401 or REBOOT.
        self.needs_handshake = True
        self._client = client
        self._clock = clock
        self._url = url.rstrip("/")
        self._rng = rng if rng is not None else random.Random()
        self._error_delay = error_delay
        self._batch = max(1, batch)
        self._timeout = timeout
        self._outbox: Dict[str, Deque[bytes]] = {table: deque() for table in TABLES}
        self._replies: List[Reply] = []
        self._options_pushed = False
        self._info_sent = False
        self._last_punch: Dict[str, datetime] = {}
        digest = zlib.crc32(sn.encode("utf-8"))
        high, middle, low = digest >> 16 & 255, digest >> 8 & 255, digest & 255
        #: Made up from the serial number, stable across runs.
        self.mac = f"00:17:61:{high:02x}:{middle:02x}:{low:02x}"
        self.ip = f"10.{high}.{middle}.{low & 254 or 2}"

    # Server options

    def _option(self, name: str) -> Optional[str]:
        lowered = name.lower()
        for key, value in self.server_options.items():
            if key.lower() == lowered:
                return value
        return None

    @property
    def delay(self) -> float:
        """Seconds between polls: the server's ``Delay``."""
        return max(1.0, _float(self._option("Delay"), DEFAULT_DELAY))

    @property
    def error_delay(self) -> float:
        """Seconds to wait after a failure: ``ErrorDelay`` unless overridden."""
        if self._error_delay is not None:
            return self._error_delay
        return max(1.0, _float(self._option("ErrorDelay"), DEFAULT_ERROR_DELAY))

    @property
    def stamps(self) -> Dict[str, str]:
        """The ``<TABLE>Stamp`` values of the last handshake, by table name."""
        stamps: Dict[str, str] = {}
        for key, value in self.server_options.items():
            if key.lower().endswith("stamp"):
                stamps[key[:-5].upper() or "ATTLOG"] = value
        return stamps

    def allows(self, table: str) -> bool:
        """
        Whether the server's ``TransFlag`` lets the device upload ``table`` on
        its own (both formats of spec 5; no ``TransFlag`` allows everything).
        """
        flag = self._option("TransFlag")
        if not flag:
            return True
        if flag.strip().isdigit():
            bits = flag.strip()
            if not bits.strip("0"):
                return table == "ATTPHOTO"
            wanted = {"ATTLOG": (0,), "OPERLOG": (1, 3, 4, 6, 7, 8, 9), "ATTPHOTO": (2,)}
            positions = wanted.get(table)
            return positions is None or any(bits[i : i + 1] == "1" for i in positions)
        names = {name.lower() for name in re.split(r"[\s,]+", flag)}
        wanted_names = {
            "ATTLOG": {"attlog"},
            "ATTPHOTO": {"attphoto"},
            "OPERLOG": {"oplog", "enrolluser", "chguser", "enrollfp", "chgfp", "face", "userpic"},
        }.get(table)
        return wanted_names is None or bool(names & wanted_names)

    # Requests

    async def _request(
        self,
        method: str,
        endpoint: str,
        params: Sequence[Tuple[str, str]],
        body: Optional[bytes] = None,
        content_type: bytes = b"text/plain",
    ) -> Tuple[int, bytes]:
        query = "&".join(f"{key}={quote(value, safe=',.:-_~')}" for key, value in params)
        headers = {b"User-Agent": [USER_AGENT], b"Accept": [b"*/*"]}
        if body is not None:
            headers[b"Content-Type"] = [content_type]
        self.stats.requests += 1
        try:
            response = await self._client.request(
                method,
                f"{self._url}/iclock/{endpoint}?{query}",
                headers=headers,
                data=body,
                allow_redirects=False,
                reactor=self._clock,
                timeout=self._timeout,
            )
            content = await response.content()
        except _NETWORK_ERRORS as e:
            raise Unreachable(_describe(e)) from None
        return response.code, content

    def _expect_ok(self, what: str, status: int, body: bytes) -> None:
        if status == 401:
            self.needs_handshake = True
            raise NotAuthorized(what, status, body)
        if status != 200 or not body.strip().startswith(b"OK"):
            raise Rejected(what, status, body)

    def _failed(self, reason: DeviceError) -> None:
        self.stats.failures += 1
        self.stats.errors[str(reason)] += 1

    async def handshake(self) -> Dict[str, str]:
        """
        ``GET /iclock/cdata?SN=..&options=all`` (spec 5) and remember the
        options: ``Delay``, ``ErrorDelay``, ``TransFlag``, the stamps.

        :returns: the server's options.
        :raises NotAuthorized: on 401; try again after :attr:`error_delay`.
        :raises DeviceError: on any other failure.
        """
        params = [
            ("SN", self.sn),
            ("options", "all"),
            ("language", self.language),
            ("pushver", PUSH_VERSION),
            ("PushOptionsFlag", "1"),
        ]
        try:
            status, body = await self._request("GET", "cdata", params)
            if status == 401:
                raise NotAuthorized("handshake", status, body)
            if status != 200:
                raise Rejected("handshake", status, body)
            try:
                options = parse_options(body, self.sn)
            except ValueError as e:
                raise Rejected(f"handshake ({e})", status, body) from None
        except DeviceError as e:
            self._failed(e)
            raise
        self.server_options = options
        self.needs_handshake = False
        self._options_pushed = False
        self._info_sent = False
        return options

    async def push_options(self) -> None:
        """
        ``POST /iclock/cdata?table=options`` (spec 8): one comma-separated
        line without a final LF, like vector 002, plus any key the server
        asked for in ``PushOptions``.

        :raises DeviceError: if the server did not answer ``OK``.
        """
        info = dict(self.info())
        pairs = [(key, info[key]) for key in _OPTION_KEYS]
        for key in (self._option("PushOptions") or "").split(","):
            key = key.strip()
            if key and key not in _OPTION_KEYS:
                pairs.append((key, info.get(key, info.get("~" + key, ""))))
        body = ",".join(f"{key}={value}" for key, value in pairs).encode(self.encoding, "replace")
        try:
            status, reply = await self._request(
                "POST", "cdata", [("SN", self.sn), ("table", "options")], body
            )
            self._expect_ok("options", status, reply)
        except DeviceError as e:
            self._failed(e)
            raise
        self._options_pushed = True

    async def ping(self) -> None:
        """``GET /iclock/ping`` (spec 10): the heartbeat during long uploads."""
        try:
            status, body = await self._request("GET", "ping", [("SN", self.sn)])
            self._expect_ok("ping", status, body)
        except DeviceError as e:
            self._failed(e)
            raise

    # Uploads

    def pending(self, table: Optional[str] = None) -> int:
        """:returns: how many records wait for the server's ``OK`` (in ``table``)."""
        if table is not None:
            return len(self._outbox[table])
        return sum(len(queue) for queue in self._outbox.values())

    def punch(
        self, pin: Optional[str] = None, when: Optional[datetime] = None, photo: bool = False
    ) -> Punch:
        """
        Record a punch (and, with ``photo``, its attendance photo) in the
        device's log and upload buffer, without sending anything.

        :param pin: the user; by default one of the enrolled users, at random.
        :param when: device-local time; by default the clock's, one second
            after this user's previous punch if that is later.
        """
        if pin is None:
            pins = list(self.state.users) or [str(n) for n in range(1, 1001)]
            pin = self._rng.choice(pins)
        if when is None:
            when = datetime.fromtimestamp(int(self._clock.seconds()))
            last = self._last_punch.get(pin)
            if last is not None and when <= last:
                when = last + timedelta(seconds=1)
        self._last_punch[pin] = when
        record = Punch(
            pin=pin,
            time=when,
            verify=self._rng.choice((1, 15)),
            temperature=f"36.{self._rng.randrange(10)}",
            index=len(self.state.attlogs) + 1,
        )
        self.state.attlogs.append(record)
        self.stats.punches += 1
        self._queue("ATTLOG", record.line())
        if photo:
            self._queue_photo(record)
        return record

    def enroll(self, count: int) -> List[User]:
        """
        Enroll users ``1`` to ``count`` with a fingerprint each and a
        visible-light face for every other one, and buffer them for upload.

        :returns: the users.
        """
        users = []
        for number in range(1, count + 1):
            name = self._rng.choice(_SAMPLE_NAMES)
            if name.encode(self.encoding, "replace").decode(self.encoding) != name:
                name = f"User {number}"
            users.append(User(pin=str(number), name=name, card=str(self._rng.randrange(10**7))))
        templates = []
        for user in users:
            templates.append(Template(user.pin, FINGERPRINT, no=6, data=self._random_bytes(600)))
            if int(user.pin) % 2 == 0:
                face = Template(
                    user.pin, VISIBLE_FACE, data=self._random_bytes(1500), major="58", minor="10"
                )
                templates.append(face)
        self._store_users(users)
        self._store_templates(templates)
        return users

    def _sendable(self) -> bool:
        return any(self._outbox[table] for table in TABLES if self.allows(table))

    def _random_bytes(self, size: int) -> bytes:
        return bytes(self._rng.getrandbits(8) for _ in range(size))

    def _queue(self, table: str, line: str) -> None:
        self._outbox[table].append(line.encode(self.encoding, "replace") + b"\n")

    def _queue_photo(self, record: Punch, jpeg: Optional[bytes] = None) -> None:
        if jpeg is None:
            jpeg = make_jpeg(f"{self.sn} {record.pin} {record.time:%Y-%m-%d %H:%M:%S}".encode())
            self.state.photos.append((record, jpeg))
        header = (
            f"PIN={record.time:%Y%m%d%H%M%S}-{record.pin}.jpg\n"
            f"SN={self.sn}\nsize={len(jpeg)}\nCMD=uploadphoto\0"
        )
        self._outbox["ATTPHOTO"].append(header.encode("ascii") + jpeg)

    def _store_users(self, users: Iterable[User]) -> None:
        for user in users:
            self.state.users[user.pin] = user
            self._queue("OPERLOG", user.line())
            if user.photo:
                self._queue("OPERLOG", user.photo_line())

    def _store_templates(self, templates: Iterable[Template]) -> None:
        for template in templates:
            self.state.templates[template.key] = template
            if template.legacy:
                self._queue("OPERLOG", template.fp_line())
            else:
                self._queue("BIODATA", template.biodata_line())

    async def upload_attlog(self, records: Iterable[Punch] = ()) -> int:
        """
        Add ``records`` to the log and send every buffered punch
        (``POST cdata?table=ATTLOG``, spec 11.2), ``batch`` lines a request.

        :returns: how many punches the server acknowledged.
        :raises DeviceError: if a request was not acknowledged; its records
            and all later ones stay buffered.
        """
        for record in records:
            self.state.attlogs.append(record)
            self.stats.punches += 1
            self._queue("ATTLOG", record.line())
        return await self._flush_table("ATTLOG")

    async def upload_users(self, users: Iterable[User] = ()) -> int:
        """
        Store ``users`` and send them as ``USER`` (and ``USERPIC``) lines in
        ``OPERLOG`` (spec 11.5, 11.13) with anything else buffered there.

        :returns: how many lines the server acknowledged.
        :raises DeviceError: as :meth:`upload_attlog`.
        """
        self._store_users(users)
        return await self._flush_table("OPERLOG")

    async def upload_templates(self, templates: Iterable[Template] = ()) -> int:
        """
        Store ``templates`` and send them: fingerprints of algorithm 10 or
        older as ``FP`` lines in ``OPERLOG`` (spec 11.9), the others as
        ``BIODATA`` lines (spec 11.12).

        :returns: how many lines the server acknowledged.
        :raises DeviceError: as :meth:`upload_attlog`.
        """
        self._store_templates(templates)
        return await self._flush_table("OPERLOG") + await self._flush_table("BIODATA")

    async def upload_photo(self, record: Optional[Punch] = None) -> int:
        """
        Buffer an attendance photo of ``record`` (default: a new punch by a
        random user) and send every buffered photo, one a request
        (``POST cdata?table=ATTPHOTO``, spec 11.3): ``PIN=<time>-<pin>.jpg``,
        ``SN``, ``size`` and ``CMD=uploadphoto`` lines, NUL, the JPEG.

        :returns: how many photos the server acknowledged.
        :raises DeviceError: as :meth:`upload_attlog`.
        """
        if record is None:
            self.punch(photo=True)
        else:
            self._queue_photo(record)
        return await self._flush_table("ATTPHOTO")

    async def flush(self) -> int:
        """
        Send everything buffered, people first, in tables the server's
        ``TransFlag`` allows.

        :returns: how many records the server acknowledged.
        :raises DeviceError: at the first request that was not acknowledged.
        """
        total = 0
        for table in TABLES:
            if self.allows(table):
                total += await self._flush_table(table)
        return total

    async def _flush_table(self, table: str) -> int:
        queue = self._outbox[table]
        acknowledged = 0
        while queue:
            count, size = 0, 0
            limit = 1 if table == "ATTPHOTO" else self._batch
            while count < min(limit, len(queue)) and (count == 0 or size < _MAX_BODY):
                size += len(queue[count])
                count += 1
            body = b"".join(queue[i] for i in range(count))
            await self._send_table(table, body, count)
            for _ in range(count):
                queue.popleft()
            acknowledged += count
        return acknowledged

    async def _send_table(
        self, table: str, body: bytes, count: int, extra: Sequence[Tuple[str, str]] = ()
    ) -> None:
        params = [("SN", self.sn), ("table", table), ("Stamp", "9999"), *extra]
        self.stats.sent[table] += count
        try:
            status, reply = await self._request("POST", "cdata", params, body)
            self._expect_ok(table, status, reply)
        except DeviceError as e:
            self._failed(e)
            raise
        self.stats.acknowledged[table] += count
        match = _OK_COUNT.match(reply.strip())
        if table != "ATTPHOTO" and match is not None and int(match.group(1)) != count:
            self.stats.mismatches += 1
            self.stats.errors[f"{table}: sent {count}, server said {reply.strip()[:40]!r}"] += 1

    # Commands

    def info(self) -> List[Tuple[str, str]]:
        """:returns: the device's options, as sent to ``INFO`` (vector 019)."""
        state = self.state
        fingerprints = str(state.count(FINGERPRINT))
        faces = str(state.count(FACE, VISIBLE_FACE))
        info = [
            ("~DeviceName", "pushd-sim"),
            ("MAC", self.mac),
            ("TransactionCount", str(len(state.attlogs))),
            ("~MaxAttLogCount", "20"),
            ("UserCount", str(len(state.users))),
            ("~MaxUserCount", "100"),
            ("PhotoFunOn", "1"),
            ("~MaxUserPhotoCount", "2500"),
            ("FingerFunOn", "1"),
            ("FPVersion", "10"),
            ("~MaxFingerCount", "60"),
            ("FPCount", fingerprints),
            ("FaceFunOn", "1"),
            ("FaceVersion", "58"),
            ("~MaxFaceCount", "6000"),
            ("FaceCount", faces),
            ("FvFunOn", "0"),
            ("PvFunOn", "1"),
            ("PvVersion", "12"),
            ("~MaxPvCount", "3000"),
            ("PvCount", str(state.count(PALM))),
            ("Language", self.language),
            ("IPAddress", self.ip),
            ("~Platform", "ZAM170_TFT"),
            ("~OEMVendor", OEM_VENDOR),
            ("FWVersion", FIRMWARE),
            ("PushVersion", "Ver 2.0.32S-20200513"),
            ("~SerialNumber", self.sn),
            ("RegDeviceType", ""),
            ("BioPhotoFun", "1"),
            ("VisilightFun", "1"),
            ("MultiBioDataSupport", "0:1:0:0:0:0:0:0:1:1"),
            ("MultiBioPhotoSupport", "0:0:0:0:0:0:0:0:0:1"),
            ("MultiBioVersion", "0:10.0:0:0:0:0:0:0:12.0:58.10"),
            ("MaxMultiBioDataCount", "0:6000:0:0:0:0:0:0:3000:6000"),
            ("MaxMultiBioPhotoCount", "0:0:0:0:0:0:0:0:0:6000"),
            ("IRTempDetectionFunOn", "1"),
            ("MaskDetectionFunOn", "1"),
        ]
        info.extend(sorted(state.settings.items()))
        return info

    @property
    def language(self) -> str:
        """Appendix 2 language number: 83 for a GB codec, else 69 (English)."""
        return "83" if self.encoding.startswith("gb") else "69"

    def _info_parameter(self) -> str:
        state = self.state
        return ",".join(
            [
                FIRMWARE,
                str(len(state.users)),
                str(state.count(FINGERPRINT)),
                str(len(state.attlogs)),
                self.ip,
                "10",
                "58",
                "12",
                str(state.count(FACE, VISIBLE_FACE)),
                "11110",
            ]
        )

    async def poll(self) -> List[Reply]:
        """
        ``GET /iclock/getrequest`` (spec 9, 12), with ``INFO`` on the first
        poll after a handshake; execute the commands it returns and post the
        replies to ``/iclock/devicecmd`` (spec 13).

        :returns: the replies to this poll's commands.
        :raises DeviceError: if the poll or the replies failed; replies that
            could not be posted are posted after the next poll.
        """
        params = [("SN", self.sn)]
        if not self._info_sent:
            params.append(("INFO", self._info_parameter()))
        try:
            status, body = await self._request("GET", "getrequest", params)
            if status == 401:
                self.needs_handshake = True
                raise NotAuthorized("getrequest", status, body)
            if status != 200:
                raise Rejected("getrequest", status, body)
        except DeviceError as e:
            self._failed(e)
            raise
        self._info_sent = True
        self.stats.polls += 1
        replies = []
        for command_id, command in parse_commands(body, self.encoding):
            replies.append(await self.execute(command_id, command))
            self.stats.commands += 1
        self._replies.extend(replies)
        await self._send_replies()
        return replies

    async def _send_replies(self) -> None:
        # Single-line replies share one body (vector 020); a multi-line INFO goes alone.
        while self._replies:
            count = 1
            if "\n" not in self._replies[0].extra:
                while count < len(self._replies) and "\n" not in self._replies[count].extra:
                    count += 1
            text = "".join(reply.text() + "\n" for reply in self._replies[:count])
            try:
                status, body = await self._request(
                    "POST",
                    "devicecmd",
                    [("SN", self.sn)],
                    text.encode(self.encoding, "replace"),
                    b"application/octet-stream",
                )
                self._expect_ok("devicecmd", status, body)
            except DeviceError as e:
                self._failed(e)
                raise
            del self._replies[:count]

    async def execute(self, command_id: str, command: str) -> Reply:
        """
        Execute one command against :attr:`state` like a terminal would.

        Supported: ``DATA UPDATE|DELETE|QUERY`` of users, fingerprints, faces,
        unified templates and photos, ``CLEAR``, ``CHECK``, ``LOG``,
        ``VERIFY SUM``, ``SET OPTION``, ``RELOAD OPTIONS``, ``INFO``,
        ``REBOOT``, ``AC_UNLOCK``, ``AC_UNALARM``.  Anything else is answered
        ``Return=-1002`` (not supported).

        :returns: the reply, not yet sent.
        """
        head, _, rest = command.partition(" ")
        verb = head.upper()
        if verb == "DATA":
            action, _, rest = rest.partition(" ")
            table, _, record = rest.partition(" ")
            handler = {
                "UPDATE": self._data_update,
                "DELETE": self._data_delete,
                "QUERY": self._data_query,
            }.get(action.upper())
            code = NOT_SUPPORTED
            if handler is not None:
                code = await handler(command_id, table.upper(), _fields(record))
            return Reply(command_id, code, "DATA")
        if verb == "CLEAR":
            what = rest.strip().upper().replace(" ", "")
            return Reply(command_id, self._clear(what), f"CLEAR_{what}")
        if verb == "INFO":
            lines = "".join(f"\n{key}={value}" for key, value in self.info())
            return Reply(command_id, OK, "INFO", lines)
        if verb == "SET" and rest.upper().startswith("OPTION"):
            key, sep, value = rest[len("OPTION") :].strip().partition("=")
            if not sep or not key.strip():
                return Reply(command_id, BAD_PARAMETER, "SET OPTION")
            self._set_option(key.strip(), value)
            return Reply(command_id, OK, "SET OPTION")
        if verb == "RELOAD" and rest.strip().upper() == "OPTIONS":
            self._options_pushed = False
            return Reply(command_id, OK, "RELOAD OPTIONS")
        if verb == "VERIFY" and rest.upper().startswith("SUM"):
            return self._verify_sum(command_id, rest)
        if verb == "CHECK":
            return Reply(command_id, await self._check(), "CHECK")
        if verb == "LOG":
            return Reply(command_id, await self._quietly(self.flush()), "LOG")
        if verb == "REBOOT":
            self.needs_handshake = True
            return Reply(command_id, OK, "REBOOT")
        if verb in ("AC_UNLOCK", "AC_UNALARM"):
            return Reply(command_id, OK, verb)
        return Reply(command_id, NOT_SUPPORTED, head)

    async def _quietly(self, upload: Any) -> int:
        try:
            await upload
        except DeviceError:
            return READ_WRITE_ERROR
        return OK

    async def _data_update(self, command_id: str, table: str, fields: Dict[str, str]) -> int:
        pin = fields.get("pin", "")
        if not pin:
            return BAD_PARAMETER
        if table == "USERINFO":
            old = self.state.users.get(pin, User(pin))
            self.state.users[pin] = User(
                pin=pin,
                name=fields.get("name", old.name),
                privilege=_int(fields.get("pri"), old.privilege),
                password=fields.get("passwd", old.password),
                card=fields.get("card", old.card),
                group=_int(fields.get("grp"), old.group),
                timezones=fields.get("tz", old.timezones),
                verify=_int(fields.get("verify"), old.verify),
                vice_card=fields.get("vicecard", old.vice_card),
                photo=old.photo,
            )
            return OK
        user = self.state.users.get(pin)
        if user is None:
            return NO_SUCH_USER
        if table == "USERPIC":
            content = fields.get("content", "")
            if _int(fields.get("size"), len(content)) != len(content):
                return PHOTO_SIZE_MISMATCH
            photo = _b64(content)
            if photo is None:
                return BAD_PARAMETER
            self.state.users[pin] = replace(user, photo=photo)
            return OK
        if table == "BIOPHOTO":
            photo = _b64(fields.get("content", ""))
            if photo is None:
                return BAD_PARAMETER
            self.state.biophotos[(pin, fields.get("type", "0"))] = photo
            return OK
        if table in ("FINGERTMP", "FACE"):
            tmp = fields.get("tmp", "")
            if _int(fields.get("size"), len(tmp)) != len(tmp):
                return TEMPLATE_SIZE_MISMATCH
            data = _b64(tmp)
            if data is None:
                return BAD_TEMPLATE_FORMAT
            if table == "FINGERTMP":
                template = Template(pin, FINGERPRINT, no=_int(fields.get("fid"), 0), data=data)
            else:
                template = Template(pin, FACE, index=_int(fields.get("fid"), 0), data=data)
            self.state.templates[template.key] = template
            return OK
        if table == "BIODATA":
            data = _b64(fields.get("tmp", ""))
            if data is None:
                return BAD_TEMPLATE_FORMAT
            template = Template(
                pin,
                type=_int(fields.get("type"), 0),
                no=_int(fields.get("no"), 0),
                index=_int(fields.get("index"), 0),
                data=data,
                major=fields.get("majorver", "0"),
                minor=fields.get("minorver", "0"),
                valid=_int(fields.get("valid"), 1),
                duress=_int(fields.get("duress"), 0),
                format=_int(fields.get("format"), 0),
            )
            self.state.templates[template.key] = template
            return OK
        return NOT_SUPPORTED

    async def _data_delete(self, command_id: str, table: str, fields: Dict[str, str]) -> int:
        pin = fields.get("pin", "")
        if not pin:
            return BAD_PARAMETER
        if table == "USERINFO":
            self.state.delete_user(pin)
        elif table == "FINGERTMP":
            no = _int(fields["fid"], -1) if "fid" in fields else None
            self.state.delete_templates(pin, FINGERPRINT, no)
        elif table == "FACE":
            self.state.delete_templates(pin, FACE)
        elif table == "BIODATA":
            kind = _int(fields["type"], -1) if "type" in fields else None
            no = _int(fields["no"], -1) if "no" in fields else None
            self.state.delete_templates(pin, kind, no)
        elif table == "USERPIC":
            user = self.state.users.get(pin)
            if user is not None:
                self.state.users[pin] = replace(user, photo=None)
        elif table == "BIOPHOTO":
            self.state.biophotos = {k: v for k, v in self.state.biophotos.items() if k[0] != pin}
        else:
            return NOT_SUPPORTED
        return OK

    async def _data_query(self, command_id: str, table: str, fields: Dict[str, str]) -> int:
        if table in ("ATTLOG", "ATTPHOTO"):
            span = _span(fields)
            if span is None:
                return BAD_PARAMETER
            start, end = span
            if table == "ATTPHOTO":
                for record, jpeg in self.state.photos:
                    if start <= record.time <= end:
                        self._queue_photo(record, jpeg)
                return await self._quietly(self._flush_table("ATTPHOTO"))
            lines = [p.line() for p in self.state.attlogs if start <= p.time <= end]
            return await self._send_query_reply(command_id, "ATTLOG", lines)
        pin = fields.get("pin")
        if table == "USERINFO":
            users = [u for u in self.state.users.values() if pin is None or u.pin == pin]
            if pin is not None and not users:
                return NO_SUCH_USER
            return await self._send_query_reply(command_id, "OPERLOG", [u.line() for u in users])
        if table in ("FINGERTMP", "BIODATA"):
            wanted_type = FINGERPRINT if table == "FINGERTMP" else _int(fields.get("type"), -1)
            no = fields.get("fingerid" if table == "FINGERTMP" else "no")
            found = [
                t
                for t in self.state.templates.values()
                if (pin is None or t.pin == pin)
                and (wanted_type in (0, t.type))
                and (no is None or t.no == _int(no, -1))
            ]
            if table == "FINGERTMP":
                return await self._send_query_reply(
                    command_id, "OPERLOG", [t.fp_line() for t in found]
                )
            return await self._send_query_reply(
                command_id, "BIODATA", [t.biodata_line() for t in found]
            )
        return NOT_SUPPORTED

    async def _send_query_reply(self, command_id: str, table: str, lines: List[str]) -> int:
        """Upload query results in packs, naming the command (vector 010)."""
        packs = [lines[i : i + self._batch] for i in range(0, len(lines), self._batch)]
        for number, pack in enumerate(packs, 1):
            body = "".join(line + "\n" for line in pack).encode(self.encoding, "replace")
            extra = [
                ("Count", str(len(lines))),
                ("PackCnt", str(len(packs))),
                ("PackIdx", str(number)),
                ("CmdId", command_id),
            ]
            code = await self._quietly(self._send_table(table, body, len(pack), extra))
            if code != OK:
                return code
        return OK

    def _clear(self, what: str) -> int:
        state = self.state
        if what == "LOG":
            state.attlogs.clear()
        elif what == "PHOTO":
            state.photos.clear()
        elif what == "BIODATA":
            state.templates.clear()
        elif what == "DATA":
            state.users.clear()
            state.templates.clear()
            state.attlogs.clear()
            state.photos.clear()
            state.biophotos.clear()
        else:
            return NOT_SUPPORTED
        return OK

    def _set_option(self, key: str, value: str) -> None:
        self.state.settings[key] = value
        for known in list(self.server_options):
            if known.lower() == key.lower():
                self.server_options[known] = value
                return
        if key.lower() in ("delay", "errordelay", "transflag", "timezone", "realtime"):
            self.server_options[key] = value

    def _verify_sum(self, command_id: str, rest: str) -> Reply:
        record = rest[len("SUM") :].strip()
        if record.upper().startswith("ATTLOG"):
            record = record[len("ATTLOG") :].strip()
        fields = _fields(record)
        span = _span(fields)
        if span is None:
            return Reply(command_id, BAD_PARAMETER, "VERIFY SUM")
        total = sum(1 for p in self.state.attlogs if span[0] <= p.time <= span[1])
        extra = f"&StartTime={fields['starttime']}&EndTime={fields['endtime']}&AttlogSum={total}"
        return Reply(command_id, OK, "VERIFY SUM", extra)

    async def _check(self) -> int:
        """Read the options again; a zero ``ATTLOGStamp`` asks for every punch again."""
        try:
            await self.handshake()
        except DeviceError:
            return READ_WRITE_ERROR
        if self.stamps.get("ATTLOG", "").strip() == "0":
            self._outbox["ATTLOG"].clear()
            for record in self.state.attlogs:
                self._queue("ATTLOG", record.line())
        return OK

    # Life cycle

    async def run(
        self,
        *,
        rate: float = 1.0,
        count: Optional[int] = None,
        duration: Optional[float] = None,
        poll_interval: Optional[float] = None,
        photos: bool = False,
        users: int = 0,
        drain: float = 30.0,
    ) -> DeviceStats:
        """
        Live like a terminal: handshake (again after ``ErrorDelay`` while
        refused), push options, upload ``users`` enrolled users with their
        templates, then punch ``rate`` times a second, upload what is
        buffered, and poll every ``poll_interval`` seconds (default: the
        server's ``Delay``).  Any failure holds everything back for
        :attr:`error_delay` seconds.

        Punching stops after ``count`` punches or ``duration`` seconds; the
        device then keeps trying to deliver what is buffered for up to
        ``drain`` more seconds.

        :returns: :attr:`stats`; :meth:`pending` tells whether all was delivered.
        """
        clock = self._clock
        start = clock.seconds()
        deadline = start + duration if duration is not None else None
        if users:
            self.enroll(users)
        punched = 0
        next_poll = start
        retry_at = start
        stopped_at: Optional[float] = None
        while True:
            now = clock.seconds()
            if stopped_at is None:
                due = int((now - start) * rate) + 1 if rate > 0 else 0
                if count is not None:
                    due = min(due, count)
                if duration is not None:
                    due = min(due, math.ceil(duration * rate))
                for _ in range(due - punched):
                    self.punch(photo=photos)
                punched = max(punched, due)
                if (count is not None and punched >= count) or (
                    deadline is not None and now >= deadline
                ):
                    stopped_at = now
            if stopped_at is not None:
                if not self.pending() and not self._replies:
                    break
                if now >= stopped_at + drain:
                    break
            if now >= retry_at:
                try:
                    if self.needs_handshake:
                        await self.handshake()
                        next_poll = clock.seconds()
                    if not self._options_pushed:
                        await self.push_options()
                    await self.flush()
                    if clock.seconds() >= next_poll or self._replies:
                        await self.poll()
                        next_poll = clock.seconds() + (poll_interval or self.delay)
                except DeviceError:
                    retry_at = clock.seconds() + self.error_delay
            now = clock.seconds()
            if now < retry_at:
                wake = [retry_at]
            elif self.needs_handshake or not self._options_pushed or self._sendable():
                wake = [now]
            else:
                wake = [next_poll]
            if stopped_at is None:
                if rate > 0:
                    wake.append(start + punched / rate)
                if deadline is not None:
                    wake.append(deadline)
            else:
                wake.append(stopped_at + drain)
            await task.deferLater(clock, max(0.0, min(wake) - now))
        return self.stats


_OPTION_KEYS = (
    "~DeviceName",
    "MAC",
    "TransactionCount",
    "~MaxAttLogCount",
    "UserCount",
    "~MaxUserCount",
    "PhotoFunOn",
    "~MaxUserPhotoCount",
    "FingerFunOn",
    "FPVersion",
    "~MaxFingerCount",
    "FPCount",
    "FaceFunOn",
    "FaceVersion",
    "~MaxFaceCount",
    "FaceCount",
    "FvFunOn",
    "PvFunOn",
    "PvVersion",
    "~MaxPvCount",
    "PvCount",
    "Language",
    "IPAddress",
    "~Platform",
    "~OEMVendor",
    "FWVersion",
    "PushVersion",
    "RegDeviceType",
    "VisilightFun",
    "MultiBioDataSupport",
    "MultiBioPhotoSupport",
    "MultiBioVersion",
    "MaxMultiBioDataCount",
    "MaxMultiBioPhotoCount",
    "IRTempDetectionFunOn",
    "MaskDetectionFunOn",
)


def _keyed(*pairs: Tuple[str, str]) -> str:
    return "\t".join(f"{key}={value}" for key, value in pairs)


def _fields(record: str) -> Dict[str, str]:
    """``key=value`` pairs separated by TAB, keys lower-cased (``Pin``/``PIN``)."""
    fields: Dict[str, str] = {}
    for part in record.split("\t"):
        key, sep, value = part.partition("=")
        if sep:
            fields.setdefault(key.strip().lower(), value)
    return fields


def _span(fields: Dict[str, str]) -> Optional[Tuple[datetime, datetime]]:
    try:
        start = datetime.strptime(fields["starttime"].strip(), _TIME_FORMAT)
        end = datetime.strptime(fields["endtime"].strip(), _TIME_FORMAT)
    except (KeyError, ValueError):
        return None
    return start, end


def _b64(text: str) -> Optional[bytes]:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except ValueError:
        return None


def _int(value: Optional[str], default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _float(value: Optional[str], default: float) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


def _describe(exception: BaseException) -> str:
    """A one-line reason for a network error, without a traceback."""
    if isinstance(exception, (ResponseFailed, RequestTransmissionFailed)) and exception.reasons:
        reason = exception.reasons[0]
        if reason.check(defer.CancelledError):
            return "no answer in time"
        return reason.getErrorMessage() or reason.type.__name__
    if isinstance(exception, defer.CancelledError):
        return "no answer in time"
    return str(exception) or type(exception).__name__


# Command line


class _Outcome:
    """What :func:`main` returns, set by the simulation or by an interrupt."""

    code = 1
    summary_printed = False


def _positive(kind: Any) -> Any:
    def convert(text: str) -> Any:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must not be negative: {text}")
        return value

    return convert


def _codec(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise argparse.ArgumentTypeError(f"unknown encoding: {name}") from None


def _url(text: str) -> str:
    if not re.match(r"^https?://[^/\s]+", text):
        raise argparse.ArgumentTypeError(f"not an http:// or https:// URL: {text}")
    text = text.rstrip("/")
    return text[: -len("/iclock")] if text.endswith("/iclock") else text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pushd-sim",
        description="Virtual ZKTeco terminals speaking the Attendance PUSH protocol to a server.",
        epilog="Exits 0 when every record the devices made was acknowledged, 1 otherwise, "
        "2 when the server cannot be reached.",
    )
    add = parser.add_argument
    add("--url", type=_url, default="http://127.0.0.1:8080", help="server (%(default)s)")
    add("--devices", type=_positive(int), default=1, help="terminals (%(default)s)")
    add("--sn-prefix", default="SIM", help="serial number prefix (%(default)s: SIM0001...)")
    add("--rate", type=_positive(float), default=1.0, help="punches/s per device (%(default)s)")
    add("--batch", type=_positive(int), default=100, help="records per upload (%(default)s)")
    add("--duration", type=_positive(float), help="seconds of punching (default 10)")
    add("--count", type=_positive(int), help="punches per device, then stop")
    add("--poll", type=_positive(float), help="seconds between polls (default: server's Delay)")
    add("--photos", action="store_true", help="upload an attendance photo with each punch")
    add("--users", type=_positive(int), default=20, help="users enrolled per device (%(default)s)")
    add("--encoding", type=_codec, default="utf-8", help="device text codec (%(default)s)")
    add("--seed", type=int, help="random seed, for repeatable runs")
    add("--error-delay", type=_positive(float), help="seconds after a failure (default: server's)")
    add("--drain", type=_positive(float), default=30.0, help="seconds to deliver the rest")
    add("--timeout", type=_positive(float), default=30.0, help="seconds per request")
    add("--progress", type=_positive(float), default=5.0, help="seconds between reports, 0: none")
    return parser


def _report(devices: Sequence[VirtualDevice], elapsed: float) -> str:
    stats = DeviceStats.total(d.stats for d in devices)
    pending = sum(d.pending() for d in devices)
    return (
        f"{elapsed:6.1f}s  punches {stats.punches}, acked {stats.acknowledged['ATTLOG']}, "
        f"pending {pending}, requests {stats.requests}, retries {stats.failures}, "
        f"polls {stats.polls}, commands {stats.commands}"
    )


def _summary(devices: Sequence[VirtualDevice], elapsed: float, out: Any) -> bool:
    """Print the final figures; :returns: whether everything was acknowledged."""
    stats = DeviceStats.total(d.stats for d in devices)
    pending = sum(d.pending() for d in devices)
    unauthorized = sum(1 for d in devices if d.needs_handshake)
    acked = stats.acknowledged
    rows = [
        ("devices", f"{len(devices)} ({unauthorized} without a successful handshake)"),
        ("elapsed", f"{elapsed:.1f} s"),
        ("punches", f"{stats.punches} recorded, {acked['ATTLOG']} acknowledged"),
        ("photos", f"{acked['ATTPHOTO']} acknowledged"),
        ("operlog/biodata", f"{acked['OPERLOG']} / {acked['BIODATA']} lines acknowledged"),
        ("requests", f"{stats.requests} ({stats.failures} failed and retried)"),
        ("polls", f"{stats.polls}, {stats.commands} commands executed"),
        ("unacknowledged", str(pending)),
    ]
    if stats.mismatches:
        rows.append(("count mismatches", str(stats.mismatches)))
    print("pushd-sim summary", file=out)
    for name, value in rows:
        print(f"  {name:<16} {value}", file=out)
    for reason, times in stats.errors.most_common(5):
        print(f"  error ({times}x)  {reason}", file=out)
    return pending == 0 and stats.mismatches == 0 and unauthorized == 0


async def _simulate(reactor: Any, args: argparse.Namespace, outcome: _Outcome) -> None:
    try:
        await _simulate_devices(reactor, args, outcome)
    except Exception:
        traceback.print_exc()  # a bug in the simulator: say where
        outcome.code = 1


async def _simulate_devices(reactor: Any, args: argparse.Namespace, outcome: _Outcome) -> None:
    pool = HTTPConnectionPool(reactor, persistent=False)
    client = HTTPClient(Agent(reactor, connectTimeout=10, pool=pool))
    width = max(4, len(str(args.devices)))
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    devices = [
        VirtualDevice(
            client,
            reactor,
            args.url,
            f"{args.sn_prefix}{number:0{width}d}",
            encoding=args.encoding,
            rng=random.Random(f"{seed}:{number}"),
            error_delay=args.error_delay,
            batch=args.batch,
            timeout=args.timeout,
        )
        for number in range(1, args.devices + 1)
    ]
    if not devices:
        outcome.code = 0
        return
    try:
        await devices[0].handshake()
    except NotAuthorized:
        print(f"pushd-sim: {devices[0].sn} is not authorized yet; devices will retry")
    except Unreachable as e:
        print(f"pushd-sim: cannot reach {args.url}: {e}", file=sys.stderr)
        outcome.code = 2
        return
    except Rejected as e:
        print(f"pushd-sim: {args.url} did not accept the handshake: {e}", file=sys.stderr)
        outcome.code = 2
        return
    duration = args.duration if args.duration is not None or args.count else 10.0
    print(
        f"pushd-sim: {len(devices)} devices -> {args.url}, {args.rate:g} punches/s each, "
        + (f"{duration:g} s" if duration is not None else f"{args.count} punches")
        + f", seed {seed}"
    )
    start = reactor.seconds()

    def finish(interrupted: bool = False) -> None:
        if not outcome.summary_printed:
            outcome.summary_printed = True
            if interrupted:
                print("pushd-sim: interrupted")
            done = _summary(devices, reactor.seconds() - start, sys.stdout)
            outcome.code = 0 if done else 1

    # Ctrl-C stops the reactor before the devices finish: report what was done.
    reactor.addSystemEventTrigger("before", "shutdown", finish, interrupted=True)
    progress = None
    if args.progress:
        progress = task.LoopingCall(lambda: print(_report(devices, reactor.seconds() - start)))
        progress.clock = reactor
        progress.start(args.progress, now=False)
    runs = [
        defer.Deferred.fromCoroutine(
            device.run(
                rate=args.rate,
                count=args.count,
                duration=duration,
                poll_interval=args.poll,
                photos=args.photos,
                users=args.users,
                drain=args.drain,
            )
        )
        for device in devices
    ]
    try:
        await defer.gatherResults(runs, consumeErrors=True)
    finally:
        if progress is not None:
            progress.stop()
    finish()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    The ``pushd-sim`` command.

    :returns: 0 when all data was acknowledged, 1 when some was not, 2 when
        the server could not be reached.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.count and not args.rate:
        parser.error("--count needs a --rate above 0")
    outcome = _Outcome()
    try:
        task.react(_simulate, (args, outcome))
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
