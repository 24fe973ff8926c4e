"""
Layer 2: the device endpoints through treq's in-memory client, with a memory
store: every real and spec vector replayed, replies and stored data checked.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import tarfile
from typing import Any, Dict, List, Optional, Tuple

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from pushd.config import Config, default_options
from pushd.errors import StoreError
from pushd.interfaces import IVerifier, Verdict
from pushd.model import Command, RecordQuery
from pushd.storage.memory import MemoryStore
from pushd.testing import TestServer
from tests.vectors import Vector, all_vectors, vector

BASE = "http://192.168.1.2:8080"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(200)) + b"\xff\xd9"


class Reply:
    def __init__(
        self, status: int, headers: Dict[bytes, List[bytes]], body: bytes, length: object
    ) -> None:
        self.status = status
        self.length = length
        self.headers = headers
        self.body = body

    def header(self, name: str) -> Optional[bytes]:
        values = self.headers.get(name.lower().encode())
        return values[0] if values else None


def settle(server: TestServer, d: Deferred[Any]) -> Any:
    results: List[Any] = []
    d.addBoth(results.append)
    server.treq.flush()
    assert results, "the request did not finish"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def send(
    server: TestServer,
    method: str,
    target: str,
    body: bytes = b"",
    headers: Optional[Dict[str, str]] = None,
) -> Reply:
    # header names as bytes: Twisted caches names of both types in one dict,
    # where "Cookie" and b"Cookie" collide (a BytesWarning under -b)
    encoded = {k.encode("latin-1"): [v.encode("latin-1")] for k, v in (headers or {}).items()}
    kwargs: Dict[str, Any] = {"headers": encoded}
    if method == "POST":
        kwargs["data"] = body
    response = settle(server, server.treq.request(method, BASE + target, **kwargs))
    content = settle(server, server.treq.content(response))
    raw = {k.lower(): v for k, v in response.headers.getAllRawHeaders()}
    return Reply(response.code, raw, content, response.length)


def replay(server: TestServer, v: Vector) -> Reply:
    return send(server, v.method.decode(), v.target.decode(), v.body)


def items(server: TestServer, kind: str, **filters: Any) -> List[Dict[str, Any]]:
    page = settle(server, server.store.query(kind, RecordQuery(limit=10000, **filters)))
    return page.items  # type: ignore[no-any-return]


def make_server(tmp_path: Any, registration: str = "open", **kw: Any) -> TestServer:
    config = Config(
        data_dir=str(tmp_path),
        registration=registration,
        options=default_options(480),
        **kw.pop("config", {}),
    )
    store = kw.pop("store", None) or MemoryStore()
    server = TestServer(config, store, **kw)
    settle(server, store.open())
    return server


def handshake(server: TestServer, sn: str, extra: str = "") -> Reply:
    return send(
        server, "GET", f"/iclock/cdata?SN={sn}&options=all&pushver=2.4.1&language=69{extra}"
    )


# -- the replies themselves ---------------------------------------------------


def test_every_reply_carries_date_content_type_and_length(server: TestServer) -> None:
    reply = handshake(server, "CKJF201960996")
    assert reply.status == 200
    assert reply.header("date") is not None and reply.header("date").endswith(b"GMT")  # type: ignore[union-attr]
    assert reply.header("content-type") == b"text/plain"
    # the HTTP client keeps Content-Length to itself: it is the response's length
    assert reply.length == len(reply.body)


def test_handshake_answers_the_options_block(server: TestServer) -> None:
    reply = replay(server, vector("001"))
    lines = reply.body.decode().split("\n")
    assert lines[0] == "GET OPTION FROM: CKJF201960996"
    values = dict(line.split("=", 1) for line in lines[1:])
    assert values["ATTLOGStamp"] == "None"
    assert values["TimeZone"] == "8" and values["PushProtVer"] == "2.4.1"
    device = settle(server, server.store.get_device("CKJF201960996"))
    assert (device.push_version, device.language, device.ip) == ("2.4.1", "69", "127.0.0.1")


def test_handshake_records_pushcommkey_and_3x_device_type(server: TestServer) -> None:
    replay(server, vector("05-", "spec"))
    device = settle(server, server.store.get_device("0316144680030"))
    assert device.info["pushcommkey"] == "sent"  # whether, never which
    assert device.language == "83"
    reply = replay(server, vector("023"))
    assert (reply.status, reply.body) == (200, b"OK")  # 3.x, not registered yet
    acc = settle(server, server.store.get_device("VGU6251500098"))
    assert (acc.device_type, acc.push_version) == ("acc", "3.1.2")


def test_pushver_absent_negotiates_2_2_14(server: TestServer) -> None:
    reply = send(server, "GET", "/iclock/cdata?SN=OLD1&options=all")
    assert b"\nPushProtVer=2.2.14" in reply.body


def test_per_device_settings_override_server_values(server: TestServer) -> None:
    handshake(server, "DEV1")
    settle(server, server.store.update_device("DEV1", _settings({"Delay": "3", "TimeZone": "330"})))
    server.app.registry._devices.clear()
    reply = handshake(server, "DEV1")
    assert b"\nDelay=3\n" in reply.body and b"\nTimeZone=330\n" in reply.body


def _settings(values: Dict[str, str]) -> Any:
    from pushd.model import DeviceUpdate

    return DeviceUpdate(settings=values)


# -- registration -------------------------------------------------------------


def test_unknown_device_is_recorded_pending_and_refused(tmp_path: Any) -> None:
    server = make_server(tmp_path, registration="approve")
    for target in (
        "/iclock/cdata?SN=NEW1&options=all",
        "/iclock/getrequest?SN=NEW1",
        "/iclock/ping?SN=NEW1",
    ):
        reply = send(server, "GET", target)
        assert (reply.status, reply.body) == (401, b"Device not authorized")
    reply = send(
        server, "POST", "/iclock/cdata?SN=NEW1&table=ATTLOG", b"1\t2020-01-01 00:00:00\t0\t1\t0"
    )
    assert reply.status == 401
    assert items(server, "attendance") == []
    device = settle(server, server.store.get_device("NEW1"))
    assert device.state == "pending"
    settle(server, server.app.registry.set_state("NEW1", "approved"))
    assert handshake(server, "NEW1").status == 200


def test_allowed_serial_numbers_are_approved_on_first_contact(tmp_path: Any) -> None:
    server = make_server(tmp_path, registration="approve", config={"allow": ("PRE1",)})
    assert handshake(server, "PRE1").status == 200
    assert handshake(server, "OTHER").status == 401


def test_blocked_device_is_refused(server: TestServer) -> None:
    handshake(server, "B1")
    settle(server, server.app.registry.set_state("B1", "blocked"))
    assert send(server, "GET", "/iclock/getrequest?SN=B1").status == 401


# -- uploads --------------------------------------------------------------------


def test_real_punches_are_stored_with_every_field(server: TestServer) -> None:
    reply = replay(server, vector("009"))
    assert (reply.status, reply.body) == (200, b"OK: 1")
    [punch] = items(server, "attendance")
    assert (punch["sn"], punch["pin"], punch["time"], punch["verify"], punch["workcode"]) == (
        "CKJF202560310",
        "100",
        "2020-09-22T15:28:54",
        "15",
        "",
    )
    assert punch["extra"] == ["0", "0", "0", "36.2", "6"]


def test_resent_punches_are_acknowledged_again_and_stored_once(server: TestServer) -> None:
    v = vector("010")
    assert replay(server, v).body == b"OK: 18"
    assert replay(server, v).body == b"OK: 18"
    stored = items(server, "attendance")
    assert len(stored) == 18
    assert {p["cmd_id"] for p in stored} == {"1630"}


def test_stamp_moves_forward_and_returns_in_the_next_handshake(server: TestServer) -> None:
    send(
        server,
        "POST",
        "/iclock/cdata?SN=S1&table=ATTLOG&Stamp=500",
        b"1\t2020-01-01 00:00:00\t0\t1\t0",
    )
    send(
        server,
        "POST",
        "/iclock/cdata?SN=S1&table=ATTLOG&Stamp=400",
        b"1\t2020-01-01 00:00:01\t0\t1\t0",
    )
    server.app.registry._devices.clear()
    assert b"\nATTLOGStamp=500\n" in handshake(server, "S1").body


def test_junk_lines_are_quarantined_and_counted(server: TestServer) -> None:
    body = b"1\t2020-01-01 00:00:00\t0\t1\t0\ngarbage\n"
    reply = send(server, "POST", "/iclock/cdata?SN=J1&table=ATTLOG", body)
    assert reply.body == b"OK: 2"
    assert len(items(server, "attendance")) == 1
    [rejected] = items(server, "rejected")
    assert base64.b64decode(rejected["line"]) == b"garbage"


def test_body_of_junk_is_a_400_and_nothing_is_stored(server: TestServer) -> None:
    reply = send(server, "POST", "/iclock/cdata?SN=J2&table=ATTLOG", b"garbage\nmore garbage\n")
    assert reply.status == 400
    assert reply.body.startswith(b"no valid ATTLOG record")
    assert b"Traceback" not in reply.body and b"\n" not in reply.body
    assert items(server, "attendance") == []


@pytest.mark.parametrize(
    "target, reason",
    [
        ("/iclock/cdata?table=ATTLOG", b"missing SN parameter"),
        ("/iclock/cdata?SN=../x&table=ATTLOG", b"invalid SN parameter"),
        ("/iclock/cdata?SN=X1", b"missing table parameter"),
    ],
)
def test_malformed_requests_get_one_line_400(
    server: TestServer, target: str, reason: bytes
) -> None:
    reply = send(server, "POST", target, b"1\t2020-01-01 00:00:00")
    assert (reply.status, reply.body) == (400, reason)


def test_operation_log_users_and_photos_are_split_by_kind(server: TestServer) -> None:
    assert replay(server, vector("004")).body == b"OK: 6"
    assert replay(server, vector("012")).body == b"OK: 1"
    assert replay(server, vector("014")).body == b"OK: 1"
    ops = items(server, "operations")
    assert [o["values"][0] for o in ops[3:]] == ["DHCP", "DHCP", "DHCP"]
    [user] = items(server, "users")
    assert user["pin"] == "100 Name=Jorge Leon" and user["password"] == "1234"
    [photo] = items(server, "biophotos")
    assert (photo["pin"], photo["type"], photo["size_ok"]) == ("100", "9", True)


def test_unified_templates_are_keyed_by_pin_type_no_index(server: TestServer) -> None:
    assert replay(server, vector("005")).body == b"OK: 5"
    assert replay(server, vector("017")).body == b"OK: 12"
    assert replay(server, vector("017")).body == b"OK: 12"
    templates = items(server, "biodata")
    assert len(templates) == 17
    assert {(t["type"], t["index"]) for t in templates if t["pin"] == "5"} == {
        ("8", str(i)) for i in range(5)
    }


def test_spec_uploads_are_stored_in_their_tables(server: TestServer) -> None:
    expected = {
        "11.2-": ("attendance", b"OK: 9", 9),
        "11.4-": ("operations", b"OK: 1", 1),
        "11.5-": ("users", b"OK: 2", 2),
        "11.6-": ("idcards", b"OK: 1", 1),
        # the same punches as 11.2, now with ID numbers: acknowledged, stored once
        "11.7-": ("attendance", b"OK: 9", 9),
        "11.9-": ("fingerprints", b"OK: 3", 3),
        "11.10-": ("faces", b"OK: 1", 1),
        "11.11-": ("veins", b"OK: 1", 1),
        "11.12-": ("biodata", b"OK: 1", 1),
        "11.13-": ("userphotos", b"OK: 1", 1),
        "11.15-": ("biophotos", b"OK: 1", 1),
        "11.16-": ("errors", b"OK", 1),
    }
    for prefix, (kind, answer, count) in expected.items():
        reply = replay(server, vector(prefix, "spec"))
        assert (reply.status, reply.body) == (200, answer), prefix
        assert len(items(server, kind)) == count, prefix
    [fp] = [f for f in items(server, "fingerprints") if f["fid"] == "0" and f["pin"] == "2"]
    assert fp["size_ok"] is False and fp["template"].startswith("SghTUzlx")


def test_options_push_is_stored_with_the_hybrid_result(server: TestServer) -> None:
    reply = replay(server, vector("002"))
    assert (reply.status, reply.body) == (200, b"OK")
    device = settle(server, server.store.get_device("CKJF201960996"))
    assert device.options["~OEMVendor"] == "ZKTeco Co., Ltd."
    assert device.hybrid["MultiBioDataSupport"] == "0:1:0:0:0:0:0:0:1:1"
    assert device.hybrid["MultiBioPhotoSupport"] == "0:0:0:0:0:0:0:0:0:1"
    replay(server, vector("041"))
    assert (
        settle(server, server.store.get_device("CEZU202360241")).options["~OEMVendor"]
        == " ZKTeco Inc. "
    )


def test_getrequest_records_info_and_answers_ok(server: TestServer) -> None:
    for prefix in ("003", "039"):
        reply = replay(server, vector(prefix))
        assert (reply.status, reply.body) == (200, b"OK")
    device = settle(server, server.store.get_device("JYM6244400083"))
    assert device.firmware == "ZMM720-NF-Ver1.2.7"
    assert device.info["att_count"] == "31" and device.info["extra"] == "0,0,0"
    assert replay(server, vector("09-", "spec")).body == b"OK"
    spec = settle(server, server.store.get_device("0316144680030"))
    assert spec.firmware == "Ver 2.0.12-20150625"


def test_ping_answers_ok(server: TestServer) -> None:
    assert replay(server, vector("10-", "spec")).body == b"OK"


_SENT = {
    # the commands the vectors answer, as the original servers had sent them
    "CKJF202560310": [
        ("1626", "INFO"),
        ("287", "DATA UPDATE USERINFO PIN=1\tName=A"),
        ("288", "DATA UPDATE USERINFO PIN=2\tName=B"),
        ("1647", "GetFile attlog.dat"),
    ],
    "JYM6244400083": [("120", "INFO")],
    "SFAA245000186": [("ccf93e17c31a4beb", "SET OPTION TimeZone=3")],
    "0316144680030": [
        (i, "DATA UPDATE USERINFO PIN=9")
        for i in ("info8487", "info8488", "info8489", "info7464", "fp7464")
    ],
}


def _send_commands(server: TestServer) -> None:
    for sn, commands in _SENT.items():
        handshake(server, sn)
        for cmd_id, text in commands:
            settle(server, server.store.add_command(Command(cmd_id, sn, text, created=T)))
        settle(server, server.store.claim_commands(sn, T, 65536, 100, T, 3))


T = "2023-11-14T22:13:20Z"


def test_command_replies_complete_the_commands_they_answer(server: TestServer) -> None:
    _send_commands(server)
    for prefix in ("019", "020", "021", "036", "048"):
        reply = replay(server, vector(prefix))
        assert (reply.status, reply.body) == (200, b"OK"), prefix
    assert replay(server, vector("13-", "spec")).body == b"OK"
    replies = items(server, "replies")
    assert [r["cmd_id"] for r in replies] == [
        "1626",
        "287",
        "288",
        "1647",
        "120",
        "ccf93e17c31a4beb",
        "info8487",
        "info8488",
        "info8489",
        "info7464",
        "fp7464",
    ]
    info = settle(server, server.store.get_command("1626"))
    assert (info.status, info.return_code) == ("succeeded", "0")
    assert info.reply["options"]["~OEMVendor"] == "ZKTeco Co., Ltd."
    getfile = settle(server, server.store.get_command("1647"))
    assert (getfile.status, getfile.return_code) == ("failed", "-2")
    assert settle(server, server.store.get_command("ccf93e17c31a4beb")).status == "succeeded"
    device = settle(server, server.store.get_device("CKJF202560310"))
    assert device.options["MultiBioVersion"] == "0:10.0:0:0:0:0:0:0:12.0:58.10"


def test_replies_to_commands_the_device_does_not_own_are_refused(server: TestServer) -> None:
    _send_commands(server)
    stolen = send(server, "POST", "/iclock/devicecmd?SN=OTHER1", b"ID=1626&Return=0&CMD=INFO\n")
    assert (stolen.status, stolen.body) == (400, b"reply for unknown command id 1626")
    assert settle(server, server.store.get_command("1626")).status == "sent"
    assert [r["sn"] for r in items(server, "replies")] == ["OTHER1"]  # kept as received


def test_attendance_photo_is_written_under_a_server_built_name(
    server: TestServer, tmp_path: Any
) -> None:
    name = "20160615093758-0-1457-210218199011304365.jpg"
    body = f"PIN={name}\nSN=P1\nsize={len(JPEG)}\nCMD=uploadphoto".encode() + b"\x00" + JPEG
    for path in ("/iclock/cdata?SN=P1&table=ATTPHOTO&Stamp=1", "/iclock/fdata?SN=P1"):
        reply = send(server, "POST", path, body)
        assert (reply.status, reply.body) == (200, b"OK")
    [photo] = items(server, "attphotos")
    assert (photo["pin"], photo["photo_type"], photo["time"]) == (
        "1457",
        "0",
        "2016-06-15T09:37:58",
    )
    assert photo["path"].startswith("photos/P1/20160615-093758-") and ".." not in photo["path"]
    with open(os.path.join(str(tmp_path), photo["path"]), "rb") as handle:
        assert handle.read() == JPEG
    leftovers = [
        n for n in os.listdir(os.path.join(str(tmp_path), "photos", "P1")) if n.startswith(".")
    ]
    assert leftovers == []


def test_data_pack_is_processed_like_plain_records(server: TestServer) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in {
            "user.dat": b"USER PIN=1\tName=A\nUSER PIN=2\tName=B",
            "fp.dat": b"FP PIN=1\tFID=0\tSize=4\tValid=1\tTMP=AAAA\n",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    reply = send(
        server, "POST", "/iclock/cdata?SN=T1&table=OPERLOG&ContentType=tgz", out.getvalue()
    )
    assert (reply.status, reply.body) == (200, b"OK: 3")
    assert [u["pin"] for u in items(server, "users")] == ["1", "2"]
    bad = send(
        server, "POST", "/iclock/cdata?SN=T1&table=OPERLOG&ContentType=tgz", gzip.compress(b"x")
    )
    assert bad.status == 400 and bad.body.startswith(b"damaged data pack")


def test_chinese_device_names_are_decoded_as_gb2312(server: TestServer) -> None:
    send(server, "GET", "/iclock/cdata?SN=CN1&options=all&language=83")
    body = b"USER PIN=9\tName=" + "张三".encode("gb2312") + b"\tPri=0"
    assert send(server, "POST", "/iclock/cdata?SN=CN1&table=OPERLOG", body).body == b"OK: 1"
    [user] = items(server, "users")
    assert user["name"] == "张三"
    reply = send(server, "GET", "/iclock/cdata?SN=CN1&table=RemoteAtt&PIN=9")
    assert "张三".encode("gb18030") in reply.body


def test_remote_attendance_returns_the_user_and_fingerprints(server: TestServer) -> None:
    replay(server, vector("11.5-", "spec"))
    send(
        server,
        "POST",
        "/iclock/cdata?SN=R1&table=OPERLOG",
        b"FP PIN=36234\tFID=1\tSize=4\tValid=1\tTMP=AAAA",
    )
    reply = replay(server, vector("14-", "spec"))
    assert reply.body == (
        b"DATA UPDATE USERINFO PIN=36234\tName=36234\tPasswd=\tCard=133440\tGrp=1\t"
        b"TZ=0001000000000000\tPri=0\n"
        b"DATA UPDATE FINGERTMP PIN=36234\tFID=1\tSize=4\tValid=1\tTMP=AAAA"
    )
    unknown = send(server, "GET", "/iclock/cdata?SN=R1&table=RemoteAtt&PIN=404")
    assert (unknown.status, unknown.body) == (200, b"OK")


@implementer(IVerifier)
class _DenyPin7:
    def verify(self, sn: str, data: bytes) -> Deferred[Verdict]:
        allow = b"PIN=7" not in data
        return succeed(Verdict(allow, "OK" if allow else "Verify Failed"))


def test_post_verify_data_goes_through_the_verifier_and_is_stored(tmp_path: Any) -> None:
    server = make_server(tmp_path, verifier=_DenyPin7())
    assert replay(server, vector("12.8.3", "spec")).body == b"OK"
    denied = send(server, "POST", "/iclock/cdata?SN=V1&type=PostVerifyData", b"PIN=7")
    assert (denied.status, denied.body) == (200, b"Verify Failed")
    assert [v["verdict"] for v in items(server, "verifications")] == ["allow", "deny"]


def test_doubled_prefix_and_aspx_aliases(server: TestServer) -> None:
    for path in (
        "/iclock/iclock/getrequest",
        "/iclock/getrequest.aspx",
        "/iclock/iclock/cdata.aspx",
    ):
        target = path + ("?SN=A1&options=all" if "cdata" in path else "?SN=A1")
        assert send(server, "GET", target).status == 200, path


def test_unknown_paths_and_methods(server: TestServer) -> None:
    missing = send(server, "GET", "/iclock/nothing?SN=A1")
    assert (missing.status, missing.body) == (404, b"Not found")
    assert send(server, "GET", "/other").status == 404
    assert send(server, "GET", "/iclock/devicecmd?SN=A1").status == 405


# -- storage trouble ------------------------------------------------------------


class _BrokenStore(MemoryStore):
    def ingest(self, *args: Any, **kw: Any) -> Deferred[Any]:
        return fail(StoreError("database is locked"))

    def record_replies(self, *args: Any, **kw: Any) -> Deferred[Any]:
        return fail(StoreError("disk I/O error"))


def test_store_trouble_is_a_503_so_the_device_retries(tmp_path: Any) -> None:
    server = make_server(tmp_path, store=_BrokenStore())
    reply = replay(server, vector("009"))
    assert (reply.status, reply.body) == (503, b"database is locked")
    reply = replay(server, vector("020"))
    assert (reply.status, reply.body) == (503, b"disk I/O error")


class _Exploding(MemoryStore):
    def ingest(self, *args: Any, **kw: Any) -> Deferred[Any]:
        raise RuntimeError("bug")


def test_unexpected_errors_are_a_plain_500_without_traceback(tmp_path: Any) -> None:
    server = make_server(tmp_path, store=_Exploding())
    reply = replay(server, vector("009"))
    assert (reply.status, reply.body) == (500, b"Internal server error")


# -- every real vector ----------------------------------------------------------

_REAL: Dict[str, Tuple[int, bytes]] = {
    "001": (200, b"GET OPTION FROM: CKJF201960996\n"),
    "002": (200, b"OK"),
    "003": (200, b"OK"),
    "004": (200, b"OK: 6"),
    "005": (200, b"OK: 5"),
    "009": (200, b"OK: 1"),
    "010": (200, b"OK: 18"),
    "012": (200, b"OK: 1"),
    "014": (200, b"OK: 1"),
    "017": (200, b"OK: 12"),
    "019": (400, b"reply for unknown command id 1626"),
    "020": (400, b"reply for unknown command id 287"),
    "021": (400, b"reply for unknown command id 1647"),
    "023": (200, b"OK"),
    "024": (200, b"RegistryCode="),
    "025": (406, b"406"),
    "029": (200, b"OK"),
    "031": (200, b"user=3"),
    "033": (200, b"biophoto=1"),
    "036": (400, b"reply for unknown command id 120"),
    "039": (200, b"OK"),
    "040": (200, b"OK: 1"),
    "041": (200, b"OK"),
    "048": (400, b"reply for unknown command id ccf93e17c31a4beb"),
}


# Command replies get 400 here: no command was queued (see the completion test above).
@pytest.mark.parametrize("v", all_vectors("real"), ids=lambda v: v.name[:3])
def test_every_real_vector_gets_a_deliberate_answer(server: TestServer, v: Vector) -> None:
    reply = replay(server, v)
    status, start = _REAL[v.name[:3]]
    assert reply.status == status
    if start.endswith((b"\n", b"=")) and start != b"user=3":
        assert reply.body.startswith(start)
    else:
        assert reply.body == start
