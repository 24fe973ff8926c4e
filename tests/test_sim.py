"""
Tests for :mod:`pushd.sim`, the virtual device.

The device talks to :class:`FakeServer`, a few lines of device-side server
written here (not pushd), through ``treq.testing.StubTreq``; time is a
``task.Clock``.  Nothing touches the network or the global reactor except
:func:`test_cli_reports_unreachable_server`, which runs ``pushd-sim`` in a
subprocess against a closed port.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
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
            ("7", "SHELL ls /"),
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
        ("7", -1002, "SHELL"),
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
    assert unknown == b"ID=7&Return=-1002&CMD=SHELL\n"
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
