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

It executes every command of spec 12 against the state it keeps
(:class:`DeviceState`), as firmware would: data updates, deletes and queries,
files in and out (``GetFile``, ``PutFile`` and its data packs), ``SHELL``,
``UPGRADE`` (both methods), remote enrollments that upload what they enroll,
and the control commands; see :meth:`VirtualDevice.execute`.

``pushd-sim`` (:func:`main`) runs any number of them against a server::

    pushd-sim --url http://127.0.0.1:8080 --devices 10 --rate 2 --duration 30

and exits 0 only when everything the devices recorded was acknowledged.
"""

from __future__ import annotations

import argparse
import base64
import codecs
import gzip
import hashlib
import io
import math
import posixpath
import random
import re
import struct
import sys
import tarfile
import traceback
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import (
    Any,
    Awaitable,
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)
from urllib.parse import quote, urlsplit

from treq.client import HTTPClient
from twisted.internet import defer, error, task
from twisted.internet.interfaces import IReactorTime
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseFailed,
)

from pushd.sim_zkx1 import ZKX1Client, ZKX1ClientError

__all__ = [
    "HOME",
    "RECORD_TABLES",
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
FINGERPRINT, FACE, FINGER_VEIN, PALM, VISIBLE_FACE = 1, 2, 7, 8, 9

#: The folder of relative paths in GetFile, PutFile and SHELL.
HOME = "/mnt/mtdblock/"

#: The tables of ``DATA UPDATE``/``DELETE`` kept as plain records in
#: :attr:`DeviceState.records`: upper-cased name -> the fields (lower-cased)
#: that make a record's key, the first one required.
RECORD_TABLES: Dict[str, Tuple[str, ...]] = {
    "IDCARD": ("pin", "idnum"),
    "SMS": ("uid",),
    "USER_SMS": ("pin", "uid"),
    "ADPIC": ("index",),
    "WORKCODE": ("code",),
    "SHORTCUTKEY": ("keyid",),
    "ACCGROUP": ("id",),
    "ACCTIMEZONE": ("uid",),
    "ACCHOLIDAY": ("uid",),
    "ACCUNLOCKCOMB": ("uid",),
    "BLACKLIST": ("idnum",),
}

#: ``ENROLL_BIO`` types (those of ``MultiBioDataSupport``) and their algorithm versions.
_BIO_VERSIONS = {FINGERPRINT: ("10", "0"), PALM: ("12", "0"), VISIBLE_FACE: ("58", "10")}
_SYNC_TABLES = ("USERINFO", "FINGERTMP", "FACE")

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
SERVER_DATA_ERROR = -1008
#: What a real device answers to GetFile of a file it does not have (vector 021).
FILE_NOT_FOUND = -2
#: ENROLL_FP / ENROLL_BIO: the user already has such a template (OVERWRITE=0).
ENROLL_EXISTS = 2
#: ENROLL_MF: parameter error (spec 12.6.2).
ENROLL_MF_BAD_PARAMETER = 1

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

    Most answers are one line, ``ID=..&Return=..&CMD=..``, with :attr:`extra`
    appended: ``&key=value`` pairs, or ``\\n``-separated lines for ``INFO``.
    GetFile, PutFile and SHELL answer in the multi-line form of 12.5 and
    12.8.1 instead: ``ID=<id>`` then :attr:`lines` one a line, then
    ``Content=`` and :attr:`content` when there is one.

    :ivar code: the ``Return`` value (a file size for GetFile, a size or a
        count for PutFile, the exit status for SHELL).
    """

    id: str
    code: int
    cmd: str
    extra: str = ""
    lines: Tuple[Tuple[str, str], ...] = ()
    content: Optional[bytes] = None

    @property
    def multiline(self) -> bool:
        """Whether the answer spans several lines, so it goes in a body of its own."""
        return bool(self.lines) or "\n" in self.extra

    def text(self) -> str:
        """:returns: ``ID=<id>&Return=<code>&CMD=<cmd>`` plus :attr:`extra`, or the lines."""
        if self.lines:
            return self.data().decode("utf-8", "replace")
        return f"ID={self.id}&Return={self.code}&CMD={self.cmd}{self.extra}"

    def data(self, encoding: str = "utf-8") -> bytes:
        """
        :returns: the bytes posted to ``devicecmd``: the one-line form ends in
            LF; the multi-line form ends with the content, byte for byte.
        """
        if not self.lines:
            return (self.text() + "\n").encode(encoding, "replace")
        head = f"ID={self.id}\n" + "".join(f"{key}={value}\n" for key, value in self.lines)
        body = head.encode(encoding, "replace")
        if self.content is not None:
            body += b"Content=" + self.content
        return body


@dataclass
class DeviceState:
    """
    What the terminal holds in its flash.

    :ivar records: the records of the tables of spec 12.1.1 that are not
        users, templates or photos (``IDCARD``, ``SMS``, ``USER_SMS``,
        ``ADPIC``, ``WORKCODE``, ``SHORTCUTKEY``, ``ACCGROUP``,
        ``ACCTIMEZONE``, ``ACCHOLIDAY``, ``ACCUNLOCKCOMB``, ``BLACKLIST``): by
        upper-cased table name, then by the record's key (see
        :data:`RECORD_TABLES`), each a dict of its fields, keys lower-cased.
    :ivar files: files written by ``PutFile`` and ``UPGRADE``, by absolute
        path; :meth:`VirtualDevice.files` adds the ones made from the data.
    :ivar firmware: the image of the last successful ``UPGRADE``.
    :ivar unlocks: how many times ``AC_UNLOCK`` opened the door.
    :ivar alarm: whether the alarm output is on (``AC_UNALARM`` turns it off).
    """

    users: Dict[str, User] = field(default_factory=dict)
    templates: Dict[Tuple[str, int, int, int], Template] = field(default_factory=dict)
    attlogs: List[Punch] = field(default_factory=list)
    photos: List[Tuple[Punch, bytes]] = field(default_factory=list)
    biophotos: Dict[Tuple[str, str], bytes] = field(default_factory=dict)
    settings: Dict[str, str] = field(default_factory=dict)
    records: Dict[str, Dict[Tuple[str, ...], Dict[str, str]]] = field(default_factory=dict)
    files: Dict[str, bytes] = field(default_factory=dict)
    firmware: Optional[bytes] = None
    unlocks: int = 0
    alarm: bool = False

    def count(self, *types: int) -> int:
        """:returns: the number of templates of the given biometric types."""
        return sum(1 for template in self.templates.values() if template.type in types)

    def count_of(self, pin: str, kind: int) -> int:
        """:returns: the number of templates of one user and biometric type."""
        return sum(1 for t in self.templates.values() if t.pin == pin and t.type == kind)

    def table(self, name: str) -> Dict[Tuple[str, ...], Dict[str, str]]:
        """:returns: the records of table ``name`` (upper case), by key."""
        return self.records.setdefault(name.upper(), {})

    def delete_user(self, pin: str) -> None:
        """Remove a user with everything that belongs to them."""
        self.users.pop(pin, None)
        self.delete_templates(pin)
        self.biophotos = {k: v for k, v in self.biophotos.items() if k[0] != pin}
        messages = self.table("USER_SMS")
        for key in [key for key, record in messages.items() if record.get("pin") == pin]:
            del messages[key]

    def delete_templates(
        self, pin: Optional[str], kind: Optional[int] = None, no: Optional[int] = None
    ) -> None:
        """
        Remove a user's templates (every user's when ``pin`` is None),
        optionally only of one biometric type and number.
        """
        self.templates = {
            key: template
            for key, template in self.templates.items()
            if not (
                (pin is None or template.pin == pin)
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
        zkx1: Optional[ZKX1Client] = None,
    ) -> None:
        self.sn = sn
        #: The ZKX1 client (``--encrypt``), used when the server negotiates ZKX1.
        self.zkx1 = zkx1
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
        self._handlers = self._command_handlers()
        self._updates = self._update_handlers()
        self._deletes = self._delete_handlers()
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
    def options_pushed(self) -> bool:
        """Whether the options went up since the last handshake or ``RELOAD OPTIONS``."""
        return self._options_pushed

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
        return await self._http(
            method, f"{self._url}/iclock/{endpoint}?{query}", body, content_type
        )

    async def _http(
        self,
        method: str,
        url: str,
        body: Optional[bytes] = None,
        content_type: bytes = b"text/plain",
    ) -> Tuple[int, bytes]:
        headers = {b"User-Agent": [USER_AGENT], b"Accept": [b"*/*"]}
        if body is not None:
            headers[b"Content-Type"] = [content_type]
        self.stats.requests += 1
        try:
            response = await self._client.request(
                method,
                url,
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
        if self.encrypts:
            await self._exchange()
        return options

    @property
    def encrypts(self) -> bool:
        """Whether punches go sealed: ``--encrypt`` and the server offered ZKX1 (crypto.md)."""
        return (
            self.zkx1 is not None
            and self._option("Encrypt") == "1"
            and (self._option("EncryptProfile") or "").upper() == "ZKX1"
        )

    async def _exchange(self) -> None:
        """The key and factor exchange of ZKX1 (spec 6, 7), after each handshake."""
        assert self.zkx1 is not None
        self.zkx1.reset()
        try:
            for kind, request, accept in (
                ("publickey", self.zkx1.publickey_request, self.zkx1.publickey_reply),
                ("factors", self.zkx1.factors_request, self.zkx1.factors_reply),
            ):
                status, body = await self._request(
                    "POST", "exchange", [("SN", self.sn), ("type", kind)], request()
                )
                if status != 200:
                    raise Rejected(f"exchange {kind}", status, body)
                try:
                    accept(body)
                except ZKX1ClientError as e:
                    raise Rejected(f"exchange {kind} ({e})", status, body) from None
        except DeviceError as e:
            self.needs_handshake = True
            self._failed(e)
            raise

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
        if table == "ATTLOG" and self.encrypts:
            assert self.zkx1 is not None
            body = self.zkx1.seal(body)  # crypto.md: the whole ATTLOG body, sealed
        try:
            status, reply = await self._request("POST", "cdata", params, body)
            if status == 401 and reply.startswith(b"ERROR ZKX1"):
                self.needs_handshake = True  # the session is gone: handshake and exchange again
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
        # Single-line replies share one body (vector 020); a multi-line one goes alone.
        while self._replies:
            count = 1
            if not self._replies[0].multiline:
                while count < len(self._replies) and not self._replies[count].multiline:
                    count += 1
            body = b"".join(reply.data(self.encoding) for reply in self._replies[:count])
            try:
                status, answer = await self._request(
                    "POST",
                    "devicecmd",
                    [("SN", self.sn)],
                    body,
                    b"application/octet-stream",
                )
                self._expect_ok("devicecmd", status, answer)
            except DeviceError as e:
                self._failed(e)
                raise
            del self._replies[:count]

    async def execute(self, command_id: str, command: str) -> Reply:
        """
        Execute one command against :attr:`state` like a terminal would.

        Every command of spec 12 is understood: ``DATA UPDATE`` and ``DATA
        DELETE`` of every table of 12.1.1 and 12.1.2, ``DATA QUERY`` (the
        records go up to ``cdata`` naming the command in ``CmdId``),
        ``CLEAR``, ``CHECK``, ``LOG``, ``VERIFY SUM``, ``SET OPTION``,
        ``RELOAD OPTIONS``, ``INFO``, ``GetFile``, ``PutFile`` (files, and
        ``SyncData``/``AppendData`` packs), ``SHELL``, ``UPGRADE``,
        ``ENROLL_FP``, ``ENROLL_MF``, ``ENROLL_BIO``, ``REBOOT``,
        ``AC_UNLOCK`` and ``AC_UNALARM``.  Anything else is answered
        ``Return=-1002`` (not supported).

        :returns: the reply, not yet sent.
        """
        head, _, rest = command.partition(" ")
        handler = self._handlers.get(head.strip().upper())
        if handler is None:
            return Reply(command_id, NOT_SUPPORTED, head)
        return await handler(command_id, rest)

    def _command_handlers(self) -> Dict[str, Callable[[str, str], Awaitable[Reply]]]:
        return {
            "DATA": self._cmd_data,
            "CLEAR": self._cmd_clear,
            "CHECK": self._cmd_check,
            "LOG": self._cmd_log,
            "VERIFY": self._cmd_verify,
            "SET": self._cmd_set,
            "RELOAD": self._cmd_reload,
            "INFO": self._cmd_info,
            "GETFILE": self._cmd_get_file,
            "PUTFILE": self._cmd_put_file,
            "SHELL": self._cmd_shell,
            "UPGRADE": self._cmd_upgrade,
            "ENROLL_FP": self._cmd_enroll_fp,
            "ENROLL_MF": self._cmd_enroll_mf,
            "ENROLL_BIO": self._cmd_enroll_bio,
            "REBOOT": self._cmd_reboot,
            "AC_UNLOCK": self._cmd_unlock,
            "AC_UNALARM": self._cmd_unalarm,
        }

    def _update_handlers(self) -> Dict[str, Callable[[Dict[str, str]], Awaitable[int]]]:
        return {
            "USERINFO": self._update_user,
            "FINGERTMP": partial(self._update_template, kind=FINGERPRINT),
            "FACE": partial(self._update_template, kind=FACE),
            "FVEIN": partial(self._update_template, kind=FINGER_VEIN),
            "BIODATA": self._update_biodata,
            "USERPIC": self._update_userpic,
            "BIOPHOTO": self._update_biophoto,
        }

    def _delete_handlers(self) -> Dict[str, Callable[[Dict[str, str]], int]]:
        return {
            "USERINFO": self._delete_user,
            "FINGERTMP": partial(self._delete_templates, kind=FINGERPRINT, number="fid"),
            "FACE": partial(self._delete_templates, kind=FACE, number=None),
            "FVEIN": partial(self._delete_templates, kind=FINGER_VEIN, number="fid"),
            "BIODATA": partial(self._delete_templates, kind=None, number="no"),
            "USERPIC": self._delete_userpic,
            "BIOPHOTO": self._delete_biophoto,
        }

    async def _quietly(self, upload: Any) -> int:
        try:
            await upload
        except DeviceError:
            return READ_WRITE_ERROR
        return OK

    async def _upload_enrollments(self) -> None:
        """
        Send new enrollments at once, as firmware does after a remote
        enrollment; what the server does not take stays buffered.
        """
        for table in ("OPERLOG", "BIODATA"):
            if self.allows(table):
                await self._quietly(self._flush_table(table))

    async def _download(self, url: str) -> Optional[bytes]:
        """
        GET a file from the server, as PutFile and BIOPHOTO ``Url`` do: a URL
        that does not start with ``http://`` is relative to ``/iclock/``.

        :returns: its bytes, or None when the server did not send them.
        """
        url = url.strip()
        if not url:
            return None
        if not re.match(r"(?i)^https?://", url):
            url = f"{self._url}/iclock/{url.lstrip('/')}"
        try:
            status, body = await self._http("GET", url)
        except Unreachable:
            return None
        return body if status == 200 else None

    # DATA (12.1)

    async def _cmd_data(self, command_id: str, rest: str) -> Reply:
        return Reply(command_id, await self._data(command_id, rest), "DATA")

    async def _data(self, command_id: str, rest: str) -> int:
        """``UPDATE|DELETE|QUERY <table> <record>``: :returns: the Return code."""
        action, _, rest = rest.strip().partition(" ")
        name, _, record = rest.partition(" ")
        table, fields = name.strip().upper(), _fields(record)
        action = action.upper()
        if action == "QUERY":
            return await self._data_query(command_id, table, fields)
        if action == "UPDATE":
            update = self._updates.get(table)
            return await update(fields) if update else self._update_record(table, fields)
        if action == "DELETE":
            delete = self._deletes.get(table)
            return delete(fields) if delete else self._delete_record(table, fields)
        return NOT_SUPPORTED

    def _owner(self, fields: Dict[str, str]) -> Tuple[str, int]:
        """The PIN of a record that belongs to a user, and OK or why it cannot be stored."""
        pin = fields.get("pin", "")
        if not pin:
            return pin, BAD_PARAMETER
        return pin, OK if pin in self.state.users else NO_SUCH_USER

    async def _update_user(self, fields: Dict[str, str]) -> int:
        pin = fields.get("pin", "")
        if not pin:
            return BAD_PARAMETER
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

    async def _update_template(self, fields: Dict[str, str], kind: int) -> int:
        """FINGERTMP, FACE and FVEIN: ``FID``, ``Size``, ``Valid``, ``TMP`` (FVEIN: ``Index``)."""
        pin, code = self._owner(fields)
        if code != OK:
            return code
        tmp = fields.get("tmp", "")
        if _int(fields.get("size"), len(tmp)) != len(tmp):
            return TEMPLATE_SIZE_MISMATCH
        data = _b64(tmp)
        if not data:
            return BAD_TEMPLATE_FORMAT
        fid = _int(fields.get("fid"), -1)
        if fid < 0:
            return BAD_PARAMETER
        valid = _int(fields.get("valid"), 1)
        if kind == FACE:  # a classic face is 12 templates: FID numbers them
            template = Template(pin, FACE, index=fid, data=data, valid=valid)
        else:
            index = _int(fields.get("index"), 0) if kind == FINGER_VEIN else 0
            template = Template(pin, kind, no=fid, index=index, data=data, valid=valid)
        self.state.templates[template.key] = template
        return OK

    async def _update_biodata(self, fields: Dict[str, str]) -> int:
        pin, code = self._owner(fields)
        if code != OK:
            return code
        data = _b64(fields.get("tmp", ""))
        if not data:
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

    async def _update_userpic(self, fields: Dict[str, str]) -> int:
        pin, code = self._owner(fields)
        if code != OK:
            return code
        content = fields.get("content", "")
        if _int(fields.get("size"), len(content)) != len(content):
            return PHOTO_SIZE_MISMATCH
        photo = _b64(content)
        if not photo:
            return BAD_PARAMETER
        self.state.users[pin] = replace(self.state.users[pin], photo=photo)
        return OK

    async def _update_biophoto(self, fields: Dict[str, str]) -> int:
        """
        A comparison photo, given as base64 (``Format=0``) or fetched from
        ``Url`` (``Format=1``); with ``PostBackTmpFlag=1`` the template made
        from it goes back to the server.
        """
        pin, code = self._owner(fields)
        if code != OK:
            return code
        kind = fields.get("type", "0").strip()
        photo: Optional[bytes]
        if fields.get("format", "0").strip() == "1":
            photo = await self._download(fields.get("url", ""))
            if photo is None:
                return SERVER_DATA_ERROR
        else:
            content = fields.get("content", "")
            if _int(fields.get("size"), len(content)) != len(content):
                return PHOTO_SIZE_MISMATCH
            photo = _b64(content)
            if not photo:
                return BAD_PARAMETER
        self.state.biophotos[(pin, kind)] = photo
        if fields.get("postbacktmpflag", "0").strip() == "1":
            major, minor = _BIO_VERSIONS.get(_int(kind, 0), ("0", "0"))
            data = hashlib.sha256(photo).digest() * 16
            self._store_templates(
                [Template(pin, _int(kind, 0), data=data, major=major, minor=minor)]
            )
            await self._upload_enrollments()
        return OK

    def _update_record(self, table: str, fields: Dict[str, str]) -> int:
        """A record of one of :data:`RECORD_TABLES`, replacing the one with its key."""
        keys = RECORD_TABLES.get(table)
        if keys is None:
            return NOT_SUPPORTED
        key = tuple(fields.get(name, "").strip() for name in keys)
        if not key[0]:
            return BAD_PARAMETER
        code = self._check_record(table, fields)
        if code == OK:
            self.state.table(table)[key] = dict(fields)
        return code

    def _check_record(self, table: str, fields: Dict[str, str]) -> int:
        """What firmware checks before it stores a record of :data:`RECORD_TABLES`."""
        if table == "ADPIC":
            content = fields.get("content", "")
            if _int(fields.get("size"), len(content)) != len(content):
                return PHOTO_SIZE_MISMATCH
            if not _b64(content) or not fields.get("extension"):
                return BAD_PARAMETER
        elif table == "SMS":
            tag = _int(fields.get("tag"), 0)
            if not fields.get("msg") or tag not in (253, 254, 255) or _time(fields) is None:
                return BAD_PARAMETER
        elif table == "USER_SMS":
            if not fields.get("uid", "").strip():
                return BAD_PARAMETER
            if fields["pin"] not in self.state.users:
                return NO_SUCH_USER
        elif table == "IDCARD":
            for name in ("photo", "fptemplate1", "fptemplate2"):
                if name in fields and not _b64(fields[name]):
                    return BAD_PARAMETER
        return OK

    def _delete_user(self, fields: Dict[str, str]) -> int:
        pin = fields.get("pin", "")
        if not pin:
            return BAD_PARAMETER
        self.state.delete_user(pin)
        return OK

    def _delete_templates(
        self, fields: Dict[str, str], kind: Optional[int], number: Optional[str]
    ) -> int:
        """A user's templates of a type (BIODATA: ``Type``), or only number ``number``."""
        pin = fields.get("pin", "")
        if not pin:
            return BAD_PARAMETER
        if kind is None and "type" in fields:
            kind = _int(fields["type"], -1)
        no = _int(fields[number], -1) if number is not None and number in fields else None
        self.state.delete_templates(pin, kind, no)
        return OK

    def _delete_userpic(self, fields: Dict[str, str]) -> int:
        pin = fields.get("pin", "")
        if not pin:
            return BAD_PARAMETER
        user = self.state.users.get(pin)
        if user is not None:
            self.state.users[pin] = replace(user, photo=None)
        return OK

    def _delete_biophoto(self, fields: Dict[str, str]) -> int:
        pin = fields.get("pin", "")
        if not pin:
            return BAD_PARAMETER
        self.state.biophotos = {k: v for k, v in self.state.biophotos.items() if k[0] != pin}
        return OK

    def _delete_record(self, table: str, fields: Dict[str, str]) -> int:
        """Remove the records of :data:`RECORD_TABLES` whose fields match all of ``fields``."""
        if table not in RECORD_TABLES:
            return NOT_SUPPORTED
        if not fields:
            return BAD_PARAMETER
        records = self.state.table(table)
        for key in [k for k, r in records.items() if _matches(r, fields)]:
            del records[key]
        if table == "SMS":  # the message leaves the users' lists too
            self._delete_record("USER_SMS", {"uid": fields.get("uid", "")})
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

    # CLEAR, CHECK, options (12.2-12.4)

    async def _cmd_clear(self, command_id: str, rest: str) -> Reply:
        what = rest.strip().upper().replace(" ", "")
        return Reply(command_id, self._clear(what), f"CLEAR_{what}")

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
            state.records.clear()
        else:
            return NOT_SUPPORTED
        return OK

    async def _cmd_check(self, command_id: str, rest: str) -> Reply:
        return Reply(command_id, await self._check(), "CHECK")

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

    async def _cmd_log(self, command_id: str, rest: str) -> Reply:
        return Reply(command_id, await self._quietly(self.flush()), "LOG")

    async def _cmd_verify(self, command_id: str, rest: str) -> Reply:
        if not rest.upper().startswith("SUM"):
            return Reply(command_id, NOT_SUPPORTED, "VERIFY")
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

    async def _cmd_set(self, command_id: str, rest: str) -> Reply:
        if not rest.upper().startswith("OPTION"):
            return Reply(command_id, NOT_SUPPORTED, "SET")
        key, sep, value = rest[len("OPTION") :].strip().partition("=")
        if not sep or not key.strip():
            return Reply(command_id, BAD_PARAMETER, "SET OPTION")
        self._set_option(key.strip(), value)
        return Reply(command_id, OK, "SET OPTION")

    def _set_option(self, key: str, value: str) -> None:
        self.state.settings[key] = value
        for known in list(self.server_options):
            if known.lower() == key.lower():
                self.server_options[known] = value
                return
        if key.lower() in ("delay", "errordelay", "transflag", "timezone", "realtime"):
            self.server_options[key] = value

    async def _cmd_reload(self, command_id: str, rest: str) -> Reply:
        if rest.strip().upper() != "OPTIONS":
            return Reply(command_id, NOT_SUPPORTED, "RELOAD")
        self._options_pushed = False
        return Reply(command_id, OK, "RELOAD OPTIONS")

    async def _cmd_info(self, command_id: str, rest: str) -> Reply:
        lines = "".join(f"\n{key}={value}" for key, value in self.info())
        return Reply(command_id, OK, "INFO", lines)

    # Files (12.5), SHELL and UPGRADE (12.8)

    def files(self) -> Dict[str, bytes]:
        """
        The files ``GetFile``, ``SHELL`` and ``PutFile`` see, by absolute
        path: ``attlog.dat`` (the punches as ATTLOG lines), ``user.dat`` (the
        ``USER`` lines) and ``options.cfg`` (the ``INFO`` options) in
        :data:`HOME`, made from the data, and every file ``PutFile`` and
        ``UPGRADE`` wrote (:attr:`DeviceState.files`).
        """
        state, codec = self.state, self.encoding
        made = {
            HOME + "attlog.dat": "".join(p.line() + "\n" for p in state.attlogs),
            HOME + "user.dat": "".join(u.line() + "\n" for u in state.users.values()),
            HOME + "options.cfg": "".join(f"{k}={v}\n" for k, v in self.info()),
        }
        files = {path: text.encode(codec, "replace") for path, text in made.items()}
        files.update(state.files)
        return files

    async def _cmd_get_file(self, command_id: str, rest: str) -> Reply:
        """12.5.1: the file in the multi-line reply; ``Return=-2`` alone when there is none."""
        name = rest.strip()
        content = self.files().get(_device_path(name)) if name else None
        if content is None:
            return Reply(command_id, FILE_NOT_FOUND, "GetFile")  # vector 021
        lines = (
            ("SN", self.sn),
            ("FILENAME", name),
            ("CMD", "GetFile"),
            ("Return", str(len(content))),
        )
        return Reply(command_id, len(content), "GetFile", lines=lines, content=content)

    async def _cmd_put_file(self, command_id: str, rest: str) -> Reply:
        """
        12.5.2: download ``URL``; function 1 saves it at ``FilePath`` (a
        ``.tgz`` is unpacked into a folder) and answers its size; function 2
        applies the ``DATA UPDATE`` lines of the pack: ``SyncData`` replaces
        the device's data of ``TableName`` and answers how many commands were
        processed, ``AppendData`` adds to it and answers the size.
        """
        parts = [part.strip() for part in rest.split("\t")]
        positional = [part for part in parts if part and "=" not in part]
        options = _fields("\t".join(part for part in parts if "=" in part))
        if not positional:
            return self._put_reply(command_id, BAD_PARAMETER)
        url, path = positional[0], positional[1] if len(positional) > 1 else ""
        action = options.get("action", "").strip().lower()
        table = options.get("tablename", "").strip().upper()
        if action not in ("", "syncdata", "appenddata") or (
            action == "syncdata" and table not in _SYNC_TABLES
        ):
            return self._put_reply(command_id, BAD_PARAMETER)
        data = await self._download(url)
        if data is None:
            return self._put_reply(command_id, SERVER_DATA_ERROR)
        if action:
            processed = await self._apply_pack(data, table if action == "syncdata" else "")
            return self._put_reply(command_id, processed if action == "syncdata" else len(data))
        return self._put_reply(command_id, self._save(url, path, data))

    @staticmethod
    def _put_reply(command_id: str, code: int) -> Reply:
        return Reply(command_id, code, "PutFile", lines=(("Return", str(code)), ("CMD", "PutFile")))

    def _save(self, url: str, path: str, data: bytes) -> int:
        """PutFile function 1: :returns: the size, or an error when a .tgz is unreadable."""
        name = posixpath.basename(urlsplit(url).path) or "download"
        if name.lower().endswith((".tgz", ".tar.gz")):
            members = _unpack(data)
            if members is None:
                return READ_WRITE_ERROR
            folder = HOME if not path or path.lower().endswith((".tgz", ".tar.gz")) else path
            for member, content in members:
                self.state.files[_device_path(posixpath.join(folder, member))] = content
        else:
            target = path if path and not path.endswith("/") else posixpath.join(path, name)
            self.state.files[_device_path(target)] = data
        return len(data)

    async def _apply_pack(self, data: bytes, sync_table: str) -> int:
        """
        Run the ``C:<n>:DATA ...`` lines of a pack; with ``sync_table`` the
        pack first replaces that table (users not in it are deleted).

        :returns: how many commands succeeded.
        """
        commands = parse_commands(_pack_text(data), self.encoding)
        if sync_table == "USERINFO":
            keep = {_record_of(command).get("pin") for _, command in commands}
            for pin in [pin for pin in self.state.users if pin not in keep]:
                self.state.delete_user(pin)
        elif sync_table == "FINGERTMP":
            self.state.delete_templates(None, FINGERPRINT)
        elif sync_table == "FACE":
            self.state.delete_templates(None, FACE)
        processed = 0
        for number, command in commands:
            head, _, rest = command.partition(" ")
            if head.upper() == "DATA" and await self._data(number, rest) == OK:
                processed += 1
        return processed

    async def _cmd_shell(self, command_id: str, rest: str) -> Reply:
        """12.8.1: the exit status and the output, in the multi-line reply."""
        now = datetime.fromtimestamp(int(self._clock.seconds()))
        status, output = _shell(self.files(), now, rest.strip())
        lines = (
            ("SN", self.sn),
            ("Return", str(status)),
            ("CMD", "Shell"),
            ("FILENAME", "shellout.txt"),
        )
        return Reply(command_id, status, "Shell", lines=lines, content=output)

    async def _cmd_upgrade(self, command_id: str, rest: str) -> Reply:
        """
        12.8.2: fetch ``GET /iclock/file?SN=..&url=..``, decode it from base64
        (method 1; method 2 has ``type=1`` and sends the file as is), check
        size and MD5, install it and restart.  ``-1008`` when the server did
        not send the file, ``-3`` when it is not what the command described.
        """
        fields: Dict[str, str] = {}
        for part in rest.split(","):
            key, _, value = part.partition("=")
            fields[key.strip().lower()] = value.strip()
        url, checksum = fields.get("url", ""), fields.get("checksum", "").lower()
        size = _int(fields.get("size"), -1)
        if not url or not checksum or size < 0:
            return Reply(command_id, BAD_PARAMETER, "UPGRADE")
        try:
            status, body = await self._request("GET", "file", [("SN", self.sn), ("url", url)])
        except Unreachable:
            return Reply(command_id, SERVER_DATA_ERROR, "UPGRADE")
        if status != 200:
            return Reply(command_id, SERVER_DATA_ERROR, "UPGRADE")
        image = body if fields.get("type") == "1" else _b64(body.decode("ascii", "replace"))
        if image is None or len(image) != size or _md5(image) != checksum:
            return Reply(command_id, READ_WRITE_ERROR, "UPGRADE")
        self.state.firmware = image
        self.state.files[HOME + "emfw.cfg"] = image
        self.needs_handshake = True  # the terminal restarts into the new firmware
        return Reply(command_id, OK, "UPGRADE")

    # Remote enrollment (12.6)

    def _enrolled_user(self, pin: str, card: str = "") -> User:
        """The user a remote enrollment is for, created (and uploaded) if new."""
        user = self.state.users.get(pin)
        if user is None or (card and user.card != card):
            user = replace(user or User(pin), card=card or (user.card if user else ""))
            self._store_users([user])
        return user

    async def _cmd_enroll_fp(self, command_id: str, rest: str) -> Reply:
        """12.6.1: a new fingerprint, uploaded as an ``FP`` line; 2 if it exists and OVERWRITE=0."""
        fields = _fields(rest)
        pin, fid = fields.get("pin", ""), _int(fields.get("fid"), -1)
        if not pin or not 0 <= fid <= 9:
            return Reply(command_id, BAD_PARAMETER, "ENROLL_FP")
        if (pin, FINGERPRINT, fid, 0) in self.state.templates and not _overwrite(fields):
            return Reply(command_id, ENROLL_EXISTS, "ENROLL_FP")
        self._enrolled_user(pin)
        self._store_templates([Template(pin, FINGERPRINT, no=fid, data=self._random_bytes(600))])
        await self._upload_enrollments()
        return Reply(command_id, OK, "ENROLL_FP")

    async def _cmd_enroll_mf(self, command_id: str, rest: str) -> Reply:
        """12.6.2: a card is read and given to the user, uploaded as a ``USER`` line."""
        pin = _fields(rest).get("pin", "")
        if not pin:
            return Reply(command_id, ENROLL_MF_BAD_PARAMETER, "ENROLL_MF")
        self._enrolled_user(pin, card=str(self._rng.randrange(10**9, 10**10)))
        await self._upload_enrollments()
        return Reply(command_id, OK, "ENROLL_MF")

    async def _cmd_enroll_bio(self, command_id: str, rest: str) -> Reply:
        """
        12.6.3: a new template of ``TYPE`` (the types of ``MultiBioDataSupport``:
        fingerprint, palm, visible-light face), uploaded; 2 if the user has
        one and OVERWRITE=0.
        """
        fields = _fields(rest)
        pin, kind = fields.get("pin", ""), _int(fields.get("type"), -1)
        if not pin or not 0 <= kind <= 9:
            return Reply(command_id, BAD_PARAMETER, "ENROLL_BIO")
        if kind not in _BIO_VERSIONS:
            return Reply(command_id, NOT_SUPPORTED, "ENROLL_BIO")
        if self.state.count_of(pin, kind) and not _overwrite(fields):
            return Reply(command_id, ENROLL_EXISTS, "ENROLL_BIO")
        self.state.delete_templates(pin, kind)
        self._enrolled_user(pin, card=fields.get("cardno", "").strip())
        major, minor = _BIO_VERSIONS[kind]
        size = 1500 if kind == VISIBLE_FACE else 600
        template = Template(pin, kind, data=self._random_bytes(size), major=major, minor=minor)
        self._store_templates([template])
        await self._upload_enrollments()
        return Reply(command_id, OK, "ENROLL_BIO")

    # Control (12.7)

    async def _cmd_reboot(self, command_id: str, rest: str) -> Reply:
        self.needs_handshake = True
        return Reply(command_id, OK, "REBOOT")

    async def _cmd_unlock(self, command_id: str, rest: str) -> Reply:
        self.state.unlocks += 1
        return Reply(command_id, OK, "AC_UNLOCK")

    async def _cmd_unalarm(self, command_id: str, rest: str) -> Reply:
        self.state.alarm = False
        return Reply(command_id, OK, "AC_UNALARM")

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


def _time(fields: Dict[str, str], name: str = "starttime") -> Optional[datetime]:
    try:
        return datetime.strptime(fields.get(name, "").strip(), _TIME_FORMAT)
    except ValueError:
        return None


def _matches(record: Dict[str, str], condition: Dict[str, str]) -> bool:
    return all(record.get(key, "").strip() == value.strip() for key, value in condition.items())


def _overwrite(fields: Dict[str, str]) -> bool:
    return fields.get("overwrite", "0").strip() == "1"


def _record_of(command: str) -> Dict[str, str]:
    """The fields of ``DATA <action> <table> <record>``."""
    parts = command.split(" ", 3)
    return _fields(parts[3]) if len(parts) == 4 else {}


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _device_path(name: str) -> str:
    """An absolute path on the device; relative ones are in :data:`HOME`."""
    return posixpath.normpath(name if name.startswith("/") else posixpath.join(HOME, name))


def _unpack(data: bytes) -> Optional[List[Tuple[str, bytes]]]:
    """The regular files of a (gzip) tar as ``(name, bytes)``, or None if it is not one."""
    members = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            for member in archive.getmembers():
                handle = archive.extractfile(member) if member.isfile() else None
                name = posixpath.normpath(member.name.lstrip("/"))
                if handle is not None and not name.startswith(".."):
                    members.append((name, handle.read()))
    except (tarfile.TarError, EOFError, OSError, zlib.error):
        return None
    return members


def _pack_text(data: bytes) -> bytes:
    """The command lines of a PutFile pack: a tgz (every member), a gzip, or plain text."""
    members = _unpack(data)
    if members is not None:
        return b"\n".join(content.rstrip(b"\n") for _, content in members)
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return data


def _shell(files: Mapping[str, bytes], now: datetime, line: str) -> Tuple[int, bytes]:
    """
    Run ``line`` as a terminal's busybox would, over its ``files``:
    ``ls [-l] [path...]``, ``cat``, ``md5sum``, ``echo``, ``pwd``, ``date``,
    ``uname [-a]``; anything else is ``not found`` (127).

    :returns: the exit status and the output, both deterministic.
    """
    words = line.split()
    if not words:
        return 0, b""
    program, args = words[0], words[1:]
    names = [arg for arg in args if not arg.startswith("-")]
    if program == "ls":
        return _ls(files, names or [HOME], "-l" in args)
    if program in ("cat", "md5sum"):
        out, status = [], 0
        for name in names:
            content = files.get(_device_path(name))
            if content is None:
                out.append(f"{program}: can't open '{name}': No such file or directory\n".encode())
                status = 1
            elif program == "cat":
                out.append(content)
            else:
                out.append(f"{_md5(content)}  {name}\n".encode())
        return status, b"".join(out)
    simple = {
        "echo": " ".join(args),
        "pwd": HOME.rstrip("/"),
        "date": now.strftime("%a %b %d %H:%M:%S %Y"),
        "uname": "Linux ZAM170 3.0.8 #1 PREEMPT armv7l GNU/Linux" if "-a" in args else "Linux",
    }
    if program in simple:
        return 0, (simple[program] + "\n").encode("utf-8")
    return 127, f"sh: {program}: not found\n".encode("utf-8", "replace")


def _ls(files: Mapping[str, bytes], names: Sequence[str], long: bool) -> Tuple[int, bytes]:
    out, status = [], 0
    for name in names:
        path = _device_path(name)
        entries: Dict[str, Optional[bytes]] = {}  # name -> content, None for a folder
        if path in files:
            entries[name] = files[path]
        prefix = path.rstrip("/") + "/"
        for known, content in files.items():
            if known.startswith(prefix):
                child, _, deeper = known[len(prefix) :].partition("/")
                entries[child] = None if deeper else content
        if not entries and path not in ("/", HOME.rstrip("/")):
            out.append(f"ls: {name}: No such file or directory\n")
            status = 1
        for child in sorted(entries):
            data = entries[child]
            if long:
                mode = "drwxr-xr-x" if data is None else "-rw-r--r--"
                size = 0 if data is None else len(data)
                out.append(f"{mode}    1 root     root     {size:>8} {child}\n")
            else:
                out.append(child + "\n")
    return status, "".join(out).encode("utf-8", "replace")


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
    add(
        "--encrypt",
        action="store_true",
        help="speak the ZKX1 profile (docs/crypto.md) when the server offers it",
    )
    add(
        "--server-fingerprint",
        help="pin the server's ZKX1 key (pushctl crypto); default: trust the first key seen",
    )
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
            zkx1=ZKX1Client(
                f"{args.sn_prefix}{number:0{width}d}", server_fingerprint=args.server_fingerprint
            )
            if args.encrypt
            else None,
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
