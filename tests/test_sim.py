"""
Tests for :mod:`pushd.sim`, the virtual device.

The device talks to :class:`FakeServer`, a few lines of device-side server
written here (not pushd), through ``treq.testing.StubTreq``; time is a
``task.Clock``.  Nothing touches the network or the global reactor except
:func:`test_cli_reports_unreachable_server`, which runs ``pushd-sim`` in a
subprocess against a closed port.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import random
import socket
import subprocess
import sys
import tarfile
from collections import deque
from datetime import datetime
from typing import Any, Deque, Dict, List, Optional, Tuple

import pytest
from treq.testing import StubTreq
from twisted.internet import defer, task
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request

from pushd.sim import (
    DeviceStats,
    NotAuthorized,
    Punch,
    Rejected,
    Reply,
    Template,
    User,
    VirtualDevice,
    _parser,
    make_jpeg,
    parse_commands,
    parse_options,
)

SN = "SIM0001"
URL = "http://127.0.0.1:8080"


class FakeServer(Resource):
    """
    Just enough of a server: answers the handshake, stores uploaded lines
    once (answering ``OK: <n>``), hands out queued commands and keeps the
    command replies.

    :ivar failures: HTTP statuses to answer the next uploads with, instead of
        storing them.
    :ivar refuse_handshakes: how many handshakes to answer 401.
    """

    isLeaf = True

    def __init__(self, clock: task.Clock) -> None:
        super().__init__()
        self.clock = clock
        self.options = {
            "ATTLOGStamp": "None",
            "OPERLOGStamp": "9999",
            "ATTPHOTOStamp": "None",
            "ErrorDelay": "5",
            "Delay": "10",
            "TransFlag": "TransData AttLog\tOpLog\tAttPhoto\tEnrollUser\tChgUser\tEnrollFP",
            "TimeZone": "8",
            "Realtime": "1",
        }
        self.failures: List[int] = []
        self.refuse_handshakes = 0
        self.stored: Dict[str, List[bytes]] = {}
        self.photos: List[bytes] = []
        self.commands: Deque[Tuple[str, str]] = deque()
        self.replies: List[bytes] = []
        #: What ``/iclock/file/<path>`` and ``/iclock/file?url=<path>`` serve, by path.
        self.files: Dict[str, bytes] = {}
        #: (time, method, endpoint, query arguments, headers, body) of every request.
        self.log: List[Tuple[float, str, str, Dict[str, str], Any, bytes]] = []

    def requests(self, endpoint: str, table: Optional[str] = None) -> List[Dict[str, Any]]:
        """The requests to ``endpoint`` (and ``table``), oldest first."""
        return [
            {"time": t, "method": m, "args": a, "headers": h, "body": b}
            for t, m, e, a, h, b in self.log
            if e == endpoint and (table is None or a.get("table") == table)
        ]

    def render(self, request: Request) -> bytes:
        assert request.content is not None
        body = request.content.read()
        endpoint = request.path.decode().rsplit("/", 1)[-1]
        args = {k.decode(): v[0].decode() for k, v in request.args.items()}
        method = request.method.decode()
        self.log.append(
            (self.clock.seconds(), method, endpoint, args, request.requestHeaders, body)
        )
        path = request.path.decode()
        if path == "/iclock/file" or path.startswith("/iclock/file/"):
            content = self.files.get(args.get("url") or path[len("/iclock/file/") :])
            if content is None:
                request.setResponseCode(404)
                return b"no such file"
            return content
        if endpoint == "cdata" and method == "GET":
            if self.refuse_handshakes:
                self.refuse_handshakes -= 1
                request.setResponseCode(401)
                return b"Device not authorized"
            lines = [f"GET OPTION FROM: {args['SN']}"]
            lines += [f"{key}={value}" for key, value in self.options.items()]
            return "\n".join(lines).encode()
        if endpoint == "cdata":
            return self._upload(request, args["table"], body)
        if endpoint == "getrequest":
            lines = []
            while self.commands:
                command_id, command = self.commands.popleft()
                lines.append(f"C:{command_id}:{command}")
            return "\n".join(lines).encode() if lines else b"OK"
        if endpoint == "devicecmd":
            self.replies.append(body)
            return b"OK"
        if endpoint == "ping":
            return b"OK"
        request.setResponseCode(404)
        return b"Not Found"

    def _upload(self, request: Request, table: str, body: bytes) -> bytes:
        if self.failures:
            request.setResponseCode(self.failures.pop(0))
            return b"store unavailable"
        if table == "options":
            self.stored.setdefault("options", []).append(body)
            return b"OK"
        if table == "ATTPHOTO":
            self.photos.append(body)
            return b"OK"
        lines = [line for line in body.split(b"\n") if line]
        stored = self.stored.setdefault(table, [])
        stored.extend(line for line in lines if line not in stored)
        return b"OK: %d" % len(lines)


@pytest.fixture
def clock() -> task.Clock:
    clock = task.Clock()
    clock.advance(1_600_000_000)
    return clock


@pytest.fixture
def server(clock: task.Clock) -> FakeServer:
    return FakeServer(clock)


@pytest.fixture
def stub(server: FakeServer) -> StubTreq:
    return StubTreq(server)


@pytest.fixture
def device(stub: StubTreq, clock: task.Clock) -> VirtualDevice:
    return VirtualDevice(stub, clock, URL, SN, rng=random.Random(7))


def settle(stub: StubTreq, clock: task.Clock, awaitable: Any, max_seconds: int = 600) -> Any:
    """
    Run ``awaitable`` to completion, flushing the in-memory connections and
    advancing the clock a second at a time.

    :returns: its result, or raises its exception.
    """
    results: List[Any] = []
    defer.ensureDeferred(awaitable).addBoth(results.append)
    for _ in range(max_seconds):
        stub.flush()
        if results:
            break
        clock.advance(1)
    assert results, f"did not finish within {max_seconds} simulated seconds"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def punches(count: int, pin: str = "100") -> List[Punch]:
    return [
        Punch(pin, datetime(2020, 9, 22, 15, 28, second), index=second + 1)
        for second in range(count)
    ]


def test_handshake_sends_what_real_devices_send(device, server, stub, clock):
    """The handshake is a GET of cdata with options=all and the iClock headers."""
    settle(stub, clock, device.handshake())
    [request] = server.requests("cdata")
    assert request["method"] == "GET"
    assert request["args"]["SN"] == SN
    assert request["args"]["options"] == "all"
    assert request["args"]["pushver"] == "2.4.1"
    headers = request["headers"]
    assert headers.getRawHeaders(b"User-Agent") == [b"iClock Proxy/1.09"]
    assert headers.getRawHeaders(b"Accept") == [b"*/*"]
    assert headers.getRawHeaders(b"Connection") == [b"close"]


def test_handshake_options_are_remembered(device, stub, clock):
    """Delay, ErrorDelay, TransFlag and the stamps of the reply are kept."""
    options = settle(stub, clock, device.handshake())
    assert options["Delay"] == "10"
    assert device.delay == 10
    assert device.error_delay == 5
    assert device.stamps == {"ATTLOG": "None", "OPERLOG": "9999", "ATTPHOTO": "None"}
    assert device.allows("ATTLOG") and device.allows("ATTPHOTO") and device.allows("OPERLOG")
    assert not device.needs_handshake


def test_parse_options_tolerates_crlf_and_no_space():
    """``GET OPTION FROM:SN`` without a space and CRLF line ends parse too."""
    body = b"GET OPTION FROM:CKJF201960996\r\nDelay=5\r\nTransFlag=1111000000\r\n"
    assert parse_options(body, "CKJF201960996") == {"Delay": "5", "TransFlag": "1111000000"}


@pytest.mark.parametrize(
    "body", [b"OK", b"GET OPTION FROM: OTHER\nDelay=5", b"<html>It works</html>"]
)
def test_parse_options_rejects_other_replies(body):
    """A reply that is not this device's option block is an error."""
    with pytest.raises(ValueError):
        parse_options(body, SN)


def test_transflag_formats(device):
    """Both TransFlag formats decide which tables go up on their own."""
    device.server_options = {"TransFlag": "TransData AttLog\tOpLog"}
    assert device.allows("ATTLOG") and device.allows("OPERLOG")
    assert not device.allows("ATTPHOTO")
    device.server_options = {"TransFlag": "1010000000"}
    assert device.allows("ATTLOG") and device.allows("ATTPHOTO")
    assert not device.allows("OPERLOG")
    device.server_options = {"TransFlag": "0000000000"}
    assert device.allows("ATTPHOTO") and not device.allows("ATTLOG")


def test_handshake_refused_with_401(device, server, stub, clock):
    """A 401 raises NotAuthorized and leaves the device wanting a handshake."""
    server.refuse_handshakes = 1
    with pytest.raises(NotAuthorized):
        settle(stub, clock, device.handshake())
    assert device.needs_handshake
    assert device.stats.failures == 1
    settle(stub, clock, device.handshake())
    assert not device.needs_handshake


def test_push_options_body(device, server, stub, clock):
    """Options go up as one comma list without a final LF, like vector 002."""
    server.options["PushOptions"] = "FingerFunOn,FaceFunOn,ExtraKey"
    settle(stub, clock, device.handshake())
    settle(stub, clock, device.push_options())
    [body] = server.stored["options"]
    text = body.decode()
    assert not text.endswith("\n")
    assert ",~OEMVendor=ZKTeco Co., Ltd.," in text
    assert "MultiBioDataSupport=0:1:0:0:0:0:0:0:1:1" in text
    assert f"~DeviceName=pushd-sim,MAC={device.mac}," in text
    assert text.endswith(",ExtraKey=")


def test_attlog_lines_have_ten_fields(device, server, stub, clock):
    """ATTLOG lines are TAB-separated with 10 fields and end in LF."""
    acknowledged = settle(stub, clock, device.upload_attlog(punches(2)))
    assert acknowledged == 2
    [request] = server.requests("cdata", "ATTLOG")
    assert request["args"]["Stamp"] == "9999"
    assert request["body"] == (
        b"100\t2020-09-22 15:28:00\t0\t1\t\t0\t0\t0\t36.5\t1\n"
        b"100\t2020-09-22 15:28:01\t0\t1\t\t0\t0\t0\t36.5\t2\n"
    )
    assert device.stats.acknowledged["ATTLOG"] == 2


@pytest.mark.parametrize("status", [503, 500, 400])
def test_attlog_kept_until_acknowledged(device, server, stub, clock, status):
    """Records refused with an error stay buffered; the retry stores them once."""
    server.failures = [status]
    with pytest.raises(Rejected) as raised:
        settle(stub, clock, device.upload_attlog(punches(3)))
    assert raised.value.status == status
    assert device.pending("ATTLOG") == 3
    assert "ATTLOG" not in server.stored

    assert settle(stub, clock, device.flush()) == 3
    assert device.pending() == 0
    first, second = server.requests("cdata", "ATTLOG")
    assert first["body"] == second["body"]
    assert len(server.stored["ATTLOG"]) == 3
    assert device.stats.failures == 1
    assert device.stats.sent["ATTLOG"] == 6
    assert device.stats.acknowledged["ATTLOG"] == 3


def test_attlog_kept_when_reply_is_not_ok(device, stub, clock, server):
    """A 200 whose body is not OK acknowledges nothing."""
    server.failures = []
    server.render = lambda request: b"ERROR: database is locked"
    with pytest.raises(Rejected):
        settle(stub, clock, device.upload_attlog(punches(1)))
    assert device.pending("ATTLOG") == 1


def test_attlog_batches(stub, clock, server):
    """At most ``batch`` lines go in one request, oldest first."""
    device = VirtualDevice(stub, clock, URL, SN, batch=2)
    assert settle(stub, clock, device.upload_attlog(punches(5))) == 5
    sizes = [r["body"].count(b"\n") for r in server.requests("cdata", "ATTLOG")]
    assert sizes == [2, 2, 1]
    assert len(server.stored["ATTLOG"]) == 5


def test_users_and_templates(device, server, stub, clock):
    """Users go as USER lines, fingerprints as FP lines in OPERLOG, faces as BIODATA."""
    user = User("7", name="José Núñez", card="1234", photo=make_jpeg(b"7"))
    assert settle(stub, clock, device.upload_users([user])) == 2
    fingerprint = Template("7", no=6, data=b"\x01\x02\x03")
    face = Template("7", type=9, data=b"\x04\x05", major="58", minor="10")
    assert settle(stub, clock, device.upload_templates([fingerprint, face])) == 2
    operlog = server.stored["OPERLOG"]
    assert (
        operlog[0]
        == (
            "USER PIN=7\tName=José Núñez\tPri=0\tPasswd=\tCard=1234\tGrp=1\t"
            "TZ=0000000000000000\tVerify=-1\tViceCard=\tStartDatetime=0\tEndDatetime=0"
        ).encode()
    )
    assert operlog[1].startswith(b"USERPIC PIN=7\tFileName=7.jpg\tSize=")
    assert operlog[2] == b"FP PIN=7\tFID=6\tSize=4\tValid=1\tTMP=AQID"
    assert server.stored["BIODATA"] == [
        b"BIODATA Pin=7\tNo=0\tIndex=0\tValid=1\tDuress=0\tType=9\tMajorVer=58\t"
        b"MinorVer=10\tFormat=0\tTmp=BAU="
    ]


def test_enroll_then_flush(device, server, stub, clock):
    """Enrolled users, their fingerprints and faces are all delivered."""
    device.enroll(4)
    settle(stub, clock, device.flush())
    operlog = server.stored["OPERLOG"]
    assert sum(line.startswith(b"USER ") for line in operlog) == 4
    assert sum(line.startswith(b"FP ") for line in operlog) == 4
    assert len(server.stored["BIODATA"]) == 2


def test_user_names_in_the_device_codec(stub, clock, server):
    """Text is sent in the device's codec (GB2312 on Chinese-language devices)."""
    device = VirtualDevice(stub, clock, URL, SN, encoding="gb2312")
    settle(stub, clock, device.upload_users([User("1", name="李伟")]))
    assert "李伟".encode("gb2312") in server.stored["OPERLOG"][0]
    assert device.language == "83"


def test_photo_upload(device, server, stub, clock):
    """ATTPHOTO is header lines, NUL, then a JPEG; one photo a request."""
    record = Punch("123", datetime(2015, 7, 31, 10, 30, 12))
    settle(stub, clock, device.upload_photo(record))
    [body] = server.photos
    header, jpeg = body.split(b"\0", 1)
    assert header.split(b"\n") == [
        b"PIN=20150731103012-123.jpg",
        b"SN=" + SN.encode(),
        b"size=%d" % len(jpeg),
        b"CMD=uploadphoto",
    ]
    assert jpeg.startswith(b"\xff\xd8") and jpeg.endswith(b"\xff\xd9")


def test_make_jpeg_segments():
    """The JPEG is made of well-formed segments and differs by comment."""
    jpeg = make_jpeg(b"hello")
    assert jpeg != make_jpeg(b"other")
    position, markers = 2, []
    while jpeg[position + 1] != 0xDA:
        assert jpeg[position] == 0xFF
        markers.append(jpeg[position + 1])
        position += 2 + int.from_bytes(jpeg[position + 2 : position + 4], "big")
    assert markers == [0xE0, 0xFE, 0xDB, 0xC0, 0xC4, 0xC4]
    assert b"hello" in jpeg


def test_parse_commands():
    """``C:<id>:<command>`` lines, LF or CRLF; the command keeps its TABs and colons."""
    body = b"C:1:DATA UPDATE USERINFO PIN=1\tName=A\r\nC:ccf93e17c31a4beb:SET OPTION TimeZone=3\n"
    assert parse_commands(body) == [
        ("1", "DATA UPDATE USERINFO PIN=1\tName=A"),
        ("ccf93e17c31a4beb", "SET OPTION TimeZone=3"),
    ]
    assert parse_commands(b"OK") == []


def test_first_poll_carries_info(device, server, stub, clock):
    """The first poll after a handshake sends INFO with 10 fields; later ones do not."""
    settle(stub, clock, device.handshake())
    settle(stub, clock, device.poll())
    settle(stub, clock, device.poll())
    first, second = server.requests("getrequest")
    assert len(first["args"]["INFO"].split(",")) == 10
    assert first["args"]["INFO"].startswith("ZAM170-NF-Ver1.3.5,0,0,0,")
    assert "INFO" not in second["args"]
    assert device.stats.polls == 2


def test_commands_executed_and_replied(device, server, stub, clock):
    """Queued commands change the device and are answered ID=..&Return=..&CMD=.."""
    server.commands.extend(
        [
            ("1", "DATA UPDATE USERINFO PIN=7\tName=Ann\tPri=14"),
            ("2", "DATA UPDATE FINGERTMP PIN=7\tFID=1\tSize=8\tValid=1\tTMP=AQID"),
            ("3", "DATA UPDATE FINGERTMP PIN=7\tFID=2\tSize=4\tValid=1\tTMP=AQID"),
            ("4", "DATA UPDATE FINGERTMP PIN=99\tFID=2\tSize=4\tValid=1\tTMP=AQID"),
            ("5", "SET OPTION Delay=3"),
            ("6", "INFO"),
            ("7", "FORMAT DISK"),
        ]
    )
    settle(stub, clock, device.handshake())
    replies = settle(stub, clock, device.poll())
    assert [(r.id, r.code, r.cmd) for r in replies] == [
        ("1", 0, "DATA"),
        ("2", -9, "DATA"),
        ("3", 0, "DATA"),
        ("4", -10, "DATA"),
        ("5", 0, "SET OPTION"),
        ("6", 0, "INFO"),
        ("7", -1002, "FORMAT"),
    ]
    assert device.state.users["7"].name == "Ann"
    assert device.state.users["7"].privilege == 14
    assert device.state.templates[("7", 1, 2, 0)].data == b"\x01\x02\x03"
    assert device.delay == 3
    single, info, unknown = server.replies
    assert single == (
        b"ID=1&Return=0&CMD=DATA\nID=2&Return=-9&CMD=DATA\nID=3&Return=0&CMD=DATA\n"
        b"ID=4&Return=-10&CMD=DATA\nID=5&Return=0&CMD=SET OPTION\n"
    )
    assert info.endswith(b"\nMaskDetectionFunOn=1\nDelay=3\n")
    info_lines = info.decode().split("\n")
    assert info_lines[0] == "ID=6&Return=0&CMD=INFO"
    assert "UserCount=1" in info_lines and "FPCount=1" in info_lines
    assert "~OEMVendor=ZKTeco Co., Ltd." in info_lines
    assert unknown == b"ID=7&Return=-1002&CMD=FORMAT\n"
    [request] = server.requests("devicecmd")[:1]
    assert request["args"] == {"SN": SN}
    assert device.stats.commands == 7


def test_delete_and_clear_commands(device, server, stub, clock):
    """DELETE removes a user with their templates; CLEAR LOG empties the log."""
    device.enroll(2)
    device.punch(pin="1")
    server.commands.extend(
        [("10", "DATA DELETE USERINFO PIN=2"), ("11", "CLEAR LOG"), ("12", "CLEAR BIODATA")]
    )
    replies = settle(stub, clock, device.poll())
    assert [(r.code, r.cmd) for r in replies] == [
        (0, "DATA"),
        (0, "CLEAR_LOG"),
        (0, "CLEAR_BIODATA"),
    ]
    assert list(device.state.users) == ["1"]
    assert device.state.templates == {}
    assert device.state.attlogs == []


def test_query_attlog_uploads_matching_records(device, server, stub, clock):
    """DATA QUERY ATTLOG re-sends the punches in range, naming the command (vector 010)."""
    settle(stub, clock, device.upload_attlog(punches(5)))
    server.commands.append(
        ("77", "DATA QUERY ATTLOG StartTime=2020-09-22 15:28:01\tEndTime=2020-09-22 15:28:03")
    )
    [reply] = settle(stub, clock, device.poll())
    assert (reply.code, reply.cmd) == (0, "DATA")
    query = server.requests("cdata", "ATTLOG")[-1]
    assert query["args"]["CmdId"] == "77"
    assert query["args"]["Count"] == "3"
    assert query["body"].count(b"\n") == 3
    assert len(server.stored["ATTLOG"]) == 5


def test_verify_sum(device, server, stub, clock):
    """VERIFY SUM ATTLOG answers the number of punches in range."""
    settle(stub, clock, device.upload_attlog(punches(4)))
    server.commands.append(
        ("8", "VERIFY SUM ATTLOG StartTime=2020-09-22 00:00:00\tEndTime=2020-09-22 23:59:59")
    )
    settle(stub, clock, device.poll())
    assert server.replies == [
        b"ID=8&Return=0&CMD=VERIFY SUM&StartTime=2020-09-22 00:00:00"
        b"&EndTime=2020-09-22 23:59:59&AttlogSum=4\n"
    ]


def test_check_with_zero_stamp_resends_everything(device, server, stub, clock):
    """CHECK reads the options again; ATTLOGStamp=0 makes the device re-send its log."""
    settle(stub, clock, device.handshake())
    settle(stub, clock, device.upload_attlog(punches(2)))
    server.options["ATTLOGStamp"] = "0"
    server.commands.append(("9", "CHECK"))
    [reply] = settle(stub, clock, device.poll())
    assert (reply.code, reply.cmd) == (0, "CHECK")
    assert device.pending("ATTLOG") == 2
    settle(stub, clock, device.flush())
    assert len(server.requests("cdata", "ATTLOG")) == 2
    assert len(server.stored["ATTLOG"]) == 2


def test_reboot_asks_for_a_new_handshake(device, server, stub, clock):
    """After REBOOT is answered, the device handshakes again."""
    settle(stub, clock, device.handshake())
    server.commands.append(("5", "REBOOT"))
    settle(stub, clock, device.poll())
    assert server.replies == [b"ID=5&Return=0&CMD=REBOOT\n"]
    assert device.needs_handshake


def test_unanswered_replies_are_sent_again(device, server, stub, clock):
    """A command reply the server refused goes out again after the next poll."""
    server.commands.append(("1", "AC_UNLOCK"))
    original = server.render
    calls: List[Request] = []

    def refuse_first_reply(request):
        if request.path.endswith(b"devicecmd") and not calls:
            calls.append(request)
            request.setResponseCode(503)
            return b"busy"
        return original(request)

    server.render = refuse_first_reply
    with pytest.raises(Rejected):
        settle(stub, clock, device.poll())
    settle(stub, clock, device.poll())
    assert server.replies == [b"ID=1&Return=0&CMD=AC_UNLOCK\n"]


def run_commands(device, server, stub, clock, *commands: str) -> List[Any]:
    """Queue ``(id, command)`` pairs numbered from 1, poll once: the replies."""
    server.commands.extend((str(n), command) for n, command in enumerate(commands, 1))
    return settle(stub, clock, device.poll())


def codes(replies) -> List[int]:
    return [reply.code for reply in replies]


def test_data_updates_of_the_other_tables_are_kept(device, server, stub, clock):
    """IDCARD, SMS, USER_SMS, ADPIC, WORKCODE, ShortcutKey, Acc*, Blacklist, FVEIN (12.1.1)."""
    device.enroll(1)
    picture = base64.b64encode(b"\xff\xd8picture\xff\xd9").decode()
    replies = run_commands(
        device,
        server,
        stub,
        clock,
        "DATA UPDATE IDCARD PIN=0\tIDNum=11010119900307001X\tName=Zhang San\tGender=1",
        "DATA UPDATE SMS MSG=Hello all\tTAG=253\tUID=5\tMIN=60\tStartTime=2024-01-02 08:00:00",
        "DATA UPDATE USER_SMS PIN=1\tUID=5",
        f"DATA UPDATE ADPIC Index=1\tSize={len(picture)}\tExtension=jpg\tContent={picture}",
        "DATA UPDATE WORKCODE PIN=1\tCODE=8\tNAME=Night shift",
        "DATA UPDATE ShortcutKey KeyID=1\tKeyFun=1\tStatusCode=0\tShowName=Check-In",
        "DATA UPDATE AccGroup ID=1\tVerify=0\tValidHoliday=1\tTZ=1;1;0;0",
        "DATA UPDATE AccTimeZone UID=2\tSunStart=0\tSunEnd=2359\tMonStart=800\tMonEnd=1159",
        "DATA UPDATE AccHoliday UID=1\tHolidayName=Holiday\tStartDate=1123\tEndDate=1125",
        "DATA UPDATE AccUnLockComb UID=1\tGroup1=1\tGroup2=2\tGroup3=0\tGroup4=0\tGroup5=0",
        "DATA UPDATE Blacklist IDNum=11010119900307001X",
        "DATA UPDATE FVEIN Pin=1\tFID=2\tIndex=1\tValid=1\tSize=4\tTmp=AQID",
    )
    assert codes(replies) == [0] * 12
    assert [reply.cmd for reply in replies] == ["DATA"] * 12
    records = device.state.records
    assert records["IDCARD"][("0", "11010119900307001X")]["name"] == "Zhang San"
    assert records["SMS"][("5",)]["msg"] == "Hello all"
    assert ("1", "5") in records["USER_SMS"]
    assert records["ADPIC"][("1",)]["extension"] == "jpg"
    assert records["WORKCODE"][("8",)]["name"] == "Night shift"
    assert records["SHORTCUTKEY"][("1",)]["showname"] == "Check-In"
    assert records["ACCGROUP"][("1",)]["tz"] == "1;1;0;0"
    assert records["ACCTIMEZONE"][("2",)]["monend"] == "1159"
    assert records["ACCHOLIDAY"][("1",)]["startdate"] == "1123"
    assert records["ACCUNLOCKCOMB"][("1",)]["group2"] == "2"
    assert ("11010119900307001X",) in records["BLACKLIST"]
    assert device.state.templates[("1", 7, 2, 1)].data == b"\x01\x02\x03"


def test_data_updates_are_checked_like_firmware_does(device, server, stub, clock):
    """Bad sizes, unknown users, bad values and unknown tables get their Appendix 1 code."""
    replies = run_commands(
        device,
        server,
        stub,
        clock,
        "DATA UPDATE ADPIC Index=1\tSize=99\tExtension=jpg\tContent=AAAA",
        "DATA UPDATE USER_SMS PIN=42\tUID=5",
        "DATA UPDATE SMS MSG=x\tTAG=7\tUID=5\tMIN=1\tStartTime=2024-01-02 08:00:00",
        "DATA UPDATE SMS MSG=x\tTAG=253\tUID=5\tMIN=1\tStartTime=yesterday",
        "DATA UPDATE WORKCODE PIN=1\tNAME=no code",
        "DATA UPDATE FVEIN Pin=42\tFID=2\tIndex=1\tSize=4\tTmp=AQID",
        "DATA UPDATE NOSUCHTABLE PIN=1",
        "DATA FROB USERINFO PIN=1",
        "DATA QUERY WORKCODE",
    )
    assert codes(replies) == [-2, -10, -1, -1, -1, -10, -1002, -1002, -1002]
    assert device.state.records.get("SMS", {}) == {}


def test_data_deletes_of_the_other_tables(device, server, stub, clock):
    """SMS (with its user links), WORKCODE, ADPIC by their keys; FVEIN by finger."""
    device.enroll(1)
    run_commands(
        device,
        server,
        stub,
        clock,
        "DATA UPDATE SMS MSG=a\tTAG=254\tUID=5\tMIN=1\tStartTime=2024-01-02 08:00:00",
        "DATA UPDATE SMS MSG=b\tTAG=254\tUID=6\tMIN=1\tStartTime=2024-01-02 08:00:00",
        "DATA UPDATE USER_SMS PIN=1\tUID=5",
        "DATA UPDATE USER_SMS PIN=1\tUID=6",
        "DATA UPDATE WORKCODE PIN=1\tCODE=8\tNAME=",
        "DATA UPDATE ADPIC Index=1\tSize=4\tExtension=jpg\tContent=AAAA",
        "DATA UPDATE FVEIN Pin=1\tFID=2\tIndex=0\tSize=4\tTmp=AQID",
        "DATA UPDATE FVEIN Pin=1\tFID=3\tIndex=0\tSize=4\tTmp=AQID",
    )
    replies = run_commands(
        device,
        server,
        stub,
        clock,
        "DATA DELETE SMS UID=5",
        "DATA DELETE WORKCODE CODE=8",
        "DATA DELETE ADPIC Index=1",
        "DATA DELETE FVEIN Pin=1\tFID=2",
        "DATA DELETE SMS",
    )
    assert codes(replies) == [0, 0, 0, 0, -1]
    records = device.state.records
    assert list(records["SMS"]) == [("6",)] and list(records["USER_SMS"]) == [("1", "6")]
    assert records["WORKCODE"] == {} and records["ADPIC"] == {}
    veins = [key for key in device.state.templates if key[1] == 7]
    assert veins == [("1", 7, 3, 0)]


def test_clear_data_clears_the_other_tables_too(device, server, stub, clock):
    device.enroll(1)
    device.state.table("WORKCODE")[("8",)] = {"code": "8"}
    [reply] = run_commands(device, server, stub, clock, "CLEAR DATA")
    assert (reply.code, reply.cmd) == (0, "CLEAR_DATA")
    assert device.state.records == {} and device.state.users == {}


def test_get_file_answers_in_the_multiline_form_with_exact_bytes(device, server, stub, clock):
    """12.5.1: ID, SN, FILENAME, CMD, Return (the size) lines, then Content= and the bytes."""
    settle(stub, clock, device.upload_attlog(punches(2)))
    device.state.files["/mnt/mtdblock/bin.dat"] = b"\x00\n\r\xff" * 3
    replies = run_commands(
        device,
        server,
        stub,
        clock,
        "GetFile attlog.dat",
        "GetFile /mnt/mtdblock/bin.dat",
        "GetFile missing.dat",
        "AC_UNLOCK",
    )
    attlog = b"".join(line + b"\n" for line in server.stored["ATTLOG"])
    assert codes(replies) == [len(attlog), 12, -2, 0]
    assert server.replies == [
        b"ID=1\nSN=SIM0001\nFILENAME=attlog.dat\nCMD=GetFile\nReturn=%d\nContent=" % len(attlog)
        + attlog,
        b"ID=2\nSN=SIM0001\nFILENAME=/mnt/mtdblock/bin.dat\nCMD=GetFile\nReturn=12\nContent="
        + b"\x00\n\r\xff" * 3,
        b"ID=3&Return=-2&CMD=GetFile\nID=4&Return=0&CMD=AC_UNLOCK\n",  # vector 021
    ]
    assert device.state.unlocks == 1


def test_files_made_from_the_data(device):
    device.enroll(2)
    device.punch("1", datetime(2024, 1, 2, 8, 0, 0))
    files = device.files()
    assert sorted(files) == [
        "/mnt/mtdblock/attlog.dat",
        "/mnt/mtdblock/options.cfg",
        "/mnt/mtdblock/user.dat",
    ]
    assert files["/mnt/mtdblock/attlog.dat"].startswith(b"1\t2024-01-02 08:00:00\t0\t")
    assert files["/mnt/mtdblock/user.dat"].count(b"USER PIN=") == 2
    assert b"\n~SerialNumber=SIM0001\n" in files["/mnt/mtdblock/options.cfg"]


def test_put_file_downloads_from_iclock_and_saves(device, server, stub, clock):
    """12.5.2 function 1: a relative URL is under /iclock/; the reply is the size."""
    server.files["fw/ssruser.dat"] = b"12345"
    server.files["fw/main.tgz"] = tgz({"main.cfg": b"a=1", "sub/x.txt": b"x"})
    replies = run_commands(
        device,
        server,
        stub,
        clock,
        "PutFile file/fw/ssruser.dat\t/mnt/mtdblock/ssruser.dat",
        "PutFile file/fw/ssruser.dat",
        "PutFile file/fw/main.tgz\t/mnt/",
        "PutFile file/fw/missing.bin\t/mnt/x",
        "PutFile file/fw/ssruser.dat\t/mnt/\tAction=Frobnicate",
    )
    assert codes(replies) == [5, 5, len(server.files["fw/main.tgz"]), -1008, -1]
    assert server.replies[0] == b"ID=1\nReturn=5\nCMD=PutFile\n"
    files = device.state.files
    assert files["/mnt/mtdblock/ssruser.dat"] == b"12345"
    assert (files["/mnt/main.cfg"], files["/mnt/sub/x.txt"]) == (b"a=1", b"x")
    downloads = [entry for entry in server.log if entry[2] in ("ssruser.dat", "main.tgz")]
    assert [entry[1] for entry in downloads] == ["GET"] * 3
    assert downloads[0][3] == {}  # no SN: the URL as given


def test_put_file_sync_data_replaces_the_table(device, server, stub, clock):
    """Function 2: SyncData applies the pack's DATA UPDATE lines and answers their count."""
    device.enroll(3)
    pack = (
        b"C:1:DATA UPDATE USERINFO PIN=2\tName=Two\n"
        b"C:2:DATA UPDATE USERINFO PIN=9\tName=Nine\n"
        b"C:3:DATA UPDATE FINGERTMP PIN=9\tFID=1\tSize=4\tValid=1\tTMP=AQID\n"
        b"C:4:INFO\n"
    )
    server.files["packs/users.tgz"] = tgz({"userinfo.dat": pack})
    server.files["packs/plain.gz"] = gzip.compress(b"C:1:DATA UPDATE USERINFO PIN=11\tName=E")
    [sync, append, bad] = run_commands(
        device,
        server,
        stub,
        clock,
        "PutFile file/packs/users.tgz\t/mnt/mtdblock/\tAction=SyncData\tTableName=USERINFO"
        "\tRecordCount=4",
        "PutFile file/packs/plain.gz\t/mnt/mtdblock/\tAction=AppendData",
        "PutFile file/packs/users.tgz\t/mnt/\tAction=SyncData\tTableName=ATTLOG",
    )
    assert sync.code == 3  # INFO is not a data command
    assert append.code == len(server.files["packs/plain.gz"])
    assert bad.code == -1
    assert sorted(device.state.users) == ["11", "2", "9"]
    assert device.state.users["2"].name == "Two"
    assert ("9", 1, 1, 0) in device.state.templates
    assert not any(t.pin in ("1", "3") for t in device.state.templates.values())


def test_shell_runs_a_few_programs_deterministically(device, server, stub, clock):
    """12.8.1: SN, Return (exit status), CMD=Shell, FILENAME=shellout.txt, Content."""
    device.state.files["/mnt/mtdblock/sub/a.txt"] = b"abc"
    replies = run_commands(
        device,
        server,
        stub,
        clock,
        "SHELL echo hello world",
        "SHELL ls",
        "SHELL ls -l /mnt/mtdblock/sub",
        "SHELL cat sub/a.txt nothing",
        "SHELL md5sum sub/a.txt",
        "SHELL ls /nowhere",
        "SHELL rm -rf /",
    )
    assert codes(replies) == [0, 0, 0, 1, 0, 1, 127]
    assert server.replies[0] == (
        b"ID=1\nSN=SIM0001\nReturn=0\nCMD=Shell\nFILENAME=shellout.txt\nContent=hello world\n"
    )
    outputs = [reply.content for reply in replies]
    assert outputs[1] == b"attlog.dat\noptions.cfg\nsub\nuser.dat\n"
    assert outputs[2] == b"-rw-r--r--    1 root     root            3 a.txt\n"
    assert outputs[3] == b"abccat: can't open 'nothing': No such file or directory\n"
    assert outputs[4] == b"900150983cd24fb0d6963f7d28e17f72  sub/a.txt\n"
    assert outputs[5] == b"ls: /nowhere: No such file or directory\n"
    assert outputs[6] == b"sh: rm: not found\n"
    assert len(server.replies) == 7  # each multi-line reply in a body of its own


@pytest.mark.parametrize("method", [1, 2])
def test_upgrade_fetches_checks_and_installs(device, server, stub, clock, method):
    """12.8.2: GET /iclock/file?SN=..&url=.., base64 for method 1; MD5 and size checked."""
    image = bytes(range(256)) * 4
    digest = hashlib.md5(image).hexdigest()
    if method == 1:
        server.files["b64/emfw.cfg"] = base64.b64encode(image)
        command = f"UPGRADE checksum={digest},url=b64/emfw.cfg,size={len(image)}"
    else:
        server.files["emfw.cfg"] = image
        command = f"UPGRADE type=1,checksum={digest},size={len(image)},url=emfw.cfg"
    settle(stub, clock, device.handshake())
    assert codes(run_commands(device, server, stub, clock, command)) == [0]
    assert server.replies == [b"ID=1&Return=0&CMD=UPGRADE\n"]
    [request] = server.requests("file")
    assert request["args"] == {"SN": SN, "url": "b64/emfw.cfg" if method == 1 else "emfw.cfg"}
    assert device.state.firmware == image
    assert device.files()["/mnt/mtdblock/emfw.cfg"] == image
    assert device.needs_handshake


def test_upgrade_refuses_what_does_not_match(device, server, stub, clock):
    server.files["emfw.cfg"] = b"firmware"
    digest = hashlib.md5(b"firmware").hexdigest()
    settle(stub, clock, device.handshake())
    replies = run_commands(
        device,
        server,
        stub,
        clock,
        f"UPGRADE type=1,checksum={digest},size=7,url=emfw.cfg",
        "UPGRADE type=1,checksum=0123,size=8,url=emfw.cfg",
        f"UPGRADE checksum={digest},url=emfw.cfg,size=8",  # not base64
        f"UPGRADE type=1,checksum={digest},size=8,url=missing.cfg",
        "UPGRADE checksum=abc",
    )
    assert codes(replies) == [-3, -3, -3, -1008, -1]
    assert device.state.firmware is None and not device.needs_handshake


def test_enroll_fp_uploads_the_new_template(device, server, stub, clock):
    """12.6.1: the new user and FP line go up before the reply; 2 if it exists and OVERWRITE=0."""
    replies = run_commands(
        device,
        server,
        stub,
        clock,
        "ENROLL_FP PIN=9\tFID=5\tRETRY=3\tOVERWRITE=0",
        "ENROLL_FP PIN=9\tFID=5\tRETRY=3\tOVERWRITE=0",
        "ENROLL_FP PIN=9\tFID=5\tRETRY=3\tOVERWRITE=1",
        "ENROLL_FP PIN=9\tFID=12",
    )
    assert [(r.code, r.cmd) for r in replies] == [
        (0, "ENROLL_FP"),
        (2, "ENROLL_FP"),
        (0, "ENROLL_FP"),
        (-1, "ENROLL_FP"),
    ]
    operlog = server.stored["OPERLOG"]
    assert operlog[0].startswith(b"USER PIN=9\t")
    assert [line[:16] for line in operlog[1:]] == [b"FP PIN=9\tFID=5\tS"] * 2
    template = device.state.templates[("9", 1, 5, 0)]
    assert base64.b64encode(template.data) in operlog[-1]
    uploads = [entry[0] for entry in server.log if entry[2] in ("cdata", "devicecmd")]
    assert uploads == sorted(uploads)


def test_enroll_bio_and_mf(device, server, stub, clock):
    """12.6.3: a face goes up as BIODATA, with the card given; 12.6.2: a card as a USER line."""
    device.enroll(1)
    settle(stub, clock, device.flush())
    replies = run_commands(
        device,
        server,
        stub,
        clock,
        "ENROLL_BIO TYPE=9\tPIN=1\tCardNo=4242\tRETRY=3\tOVERWRITE=0",
        "ENROLL_BIO TYPE=9\tPIN=1\tCardNo=\tRETRY=3\tOVERWRITE=0",
        "ENROLL_BIO TYPE=4\tPIN=1\tCardNo=\tRETRY=3\tOVERWRITE=0",
        "ENROLL_MF PIN=1\tRETRY=3",
        "ENROLL_MF RETRY=3",
    )
    assert codes(replies) == [0, 2, -1002, 0, 1]
    [face] = server.stored["BIODATA"][-1:]
    assert face.startswith(b"BIODATA Pin=1\tNo=0\tIndex=0\tValid=1\tDuress=0\tType=9\tMajorVer=58")
    users = [line for line in server.stored["OPERLOG"] if line.startswith(b"USER PIN=1\t")]
    assert b"\tCard=4242\t" in users[-2]
    assert f"\tCard={device.state.users['1'].card}\t".encode() in users[-1]
    assert device.state.users["1"].card != "4242"


def test_biophoto_by_url_and_post_back(device, server, stub, clock):
    """BIOPHOTO Format=1 fetches Url; PostBackTmpFlag=1 sends the template made from it."""
    device.enroll(1)
    settle(stub, clock, device.flush())
    server.files["photos/1.jpg"] = make_jpeg(b"face")
    replies = run_commands(
        device,
        server,
        stub,
        clock,
        "DATA UPDATE BIOPHOTO PIN=1\tType=9\tSize=0\tContent=\tFormat=1\tUrl=file/photos/1.jpg"
        "\tPostBackTmpFlag=1",
        "DATA UPDATE BIOPHOTO PIN=1\tType=9\tSize=0\tContent=\tFormat=1\tUrl=file/none.jpg",
        "DATA UPDATE BIOPHOTO PIN=1\tType=9\tSize=0\tContent=\tFormat=0",
    )
    assert codes(replies) == [0, -1008, -1]
    assert device.state.biophotos[("1", "9")] == make_jpeg(b"face")
    assert server.stored["BIODATA"][-1].startswith(b"BIODATA Pin=1\tNo=0\tIndex=0\tValid=1")


def test_access_control_commands_change_the_state(device, server, stub, clock):
    device.state.alarm = True
    replies = run_commands(device, server, stub, clock, "AC_UNLOCK", "AC_UNLOCK", "AC_UNALARM")
    assert codes(replies) == [0, 0, 0]
    assert (device.state.unlocks, device.state.alarm) == (2, False)


def test_reply_forms():
    """One line ends in LF; the multi-line form ends with its content, byte for byte."""
    assert Reply("1", 0, "DATA").data() == b"ID=1&Return=0&CMD=DATA\n"
    lines = (("Return", "3"), ("CMD", "PutFile"))
    put = Reply("2", 3, "PutFile", lines=lines)
    assert put.data() == b"ID=2\nReturn=3\nCMD=PutFile\n" and put.multiline
    got = Reply("3", 2, "GetFile", lines=(("Return", "2"),), content=b"\x00\xff")
    assert got.data() == b"ID=3\nReturn=2\nContent=\x00\xff"
    assert Reply("4", 0, "INFO", "\nA=1").multiline


def tgz(members: Dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_ping(device, server, stub, clock):
    settle(stub, clock, device.ping())
    assert server.requests("ping")[0]["args"] == {"SN": SN}


def test_run_delivers_everything(device, server, stub, clock):
    """A run handshakes, pushes options, enrolls users, punches and polls."""
    server.commands.append(("1", "INFO"))
    stats = settle(stub, clock, device.run(rate=1, count=5, users=3))
    assert stats.punches == 5
    assert stats.acknowledged["ATTLOG"] == 5
    assert stats.failures == 0
    assert stats.commands == 1
    assert device.pending() == 0
    assert len(server.stored["ATTLOG"]) == 5
    assert len(server.stored["options"]) == 1
    endpoints = [entry[2] for entry in server.log]
    assert endpoints[:2] == ["cdata", "cdata"]
    assert "getrequest" in endpoints
    assert server.requests("getrequest")[0]["args"]["INFO"]


def test_run_retries_after_error_delay(device, server, stub, clock):
    """A 503 holds the data back for ErrorDelay seconds; then it is stored once."""
    settle(stub, clock, device.handshake())
    settle(stub, clock, device.push_options())
    server.failures = [503]
    stats = settle(stub, clock, device.run(rate=1, count=3, photos=True))
    assert device.pending() == 0
    assert stats.failures == 1
    assert len(server.stored["ATTLOG"]) == 3
    assert len(server.photos) == 3
    failed, retried = server.requests("cdata", "ATTLOG")[:2]
    assert retried["time"] - failed["time"] >= device.error_delay
    assert "ATTLOG: HTTP 503 'store unavailable'" in stats.errors


def test_run_waits_until_authorized(device, server, stub, clock):
    """Refused handshakes are retried every ErrorDelay; punches wait in the buffer."""
    server.refuse_handshakes = 2
    stats = settle(stub, clock, device.run(rate=1, count=2))
    handshakes = server.requests("cdata")[:3]
    assert [r["method"] for r in handshakes] == ["GET", "GET", "GET"]
    assert handshakes[1]["time"] - handshakes[0]["time"] >= 15
    assert stats.acknowledged["ATTLOG"] == 2
    assert device.pending() == 0


def test_run_gives_up_after_drain(device, server, stub, clock):
    """When the server never accepts, the run ends after ``drain`` with data pending."""
    server.failures = [503] * 1000
    settle(stub, clock, device.run(rate=1, count=2, drain=60, users=0))
    assert device.pending("ATTLOG") == 2
    assert "ATTLOG" not in server.stored


def test_stats_total():
    a, b = DeviceStats(punches=1), DeviceStats(punches=2, failures=1)
    a.acknowledged["ATTLOG"] = 1
    b.acknowledged["ATTLOG"] = 2
    total = DeviceStats.total([a, b])
    assert (total.punches, total.failures, total.acknowledged["ATTLOG"]) == (3, 1, 3)


def test_cli_options():
    args = _parser().parse_args(
        ["--url", "http://10.0.0.1:8080/iclock/", "--devices", "3", "--rate", "0.5", "--photos"]
    )
    assert args.url == "http://10.0.0.1:8080"
    assert (args.devices, args.rate, args.photos, args.sn_prefix) == (3, 0.5, True, "SIM")
    with pytest.raises(SystemExit):
        _parser().parse_args(["--url", "ftp://x"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["--encoding", "no-such-codec"])


def test_cli_reports_unreachable_server():
    """``pushd-sim`` against a closed port exits 2 with one clear line, no traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-m", "pushd.sim", "--url", f"http://127.0.0.1:{port}", "--count", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "cannot reach" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
