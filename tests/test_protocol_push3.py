"""Layer 1: Security PUSH 3.x, pure -- registration, uploads, time, the 3.x command dialect."""

from __future__ import annotations

import base64
import calendar
import hashlib
import itertools
from datetime import datetime
from typing import Any, Callable, Dict, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushd.errors import ProtocolError
from pushd.protocol import push3
from pushd.protocol.cdata import parse_table
from pushd.protocol.commands import BUILDERS, Built, InvalidCommand, format_commands
from pushd.protocol.devicecmd import parse_devicecmd
from pushd.protocol.push3 import (
    AuthRequest,
    QueryData,
    auth_reply,
    build3,
    classify_event,
    decode_time,
    encode_time,
    handshake_reply,
    interpret3,
    is_push3,
    new_registry_code,
    new_session_id,
    parse_attphotos,
    parse_auth_request,
    parse_cookie,
    parse_querydata,
    parse_registry,
    parse_rtlog,
    parse_rtstate,
    parse_tabledata,
    push3_evidence,
    push_options,
    push_reply,
    registry_reply,
    row_count,
    rtdata_time,
    session_cookie,
    tabledata_reply,
    token_valid,
)
from pushd.protocol.records import (
    AccessEvent,
    AttLog,
    AttPhoto,
    BioPhoto,
    BioTemplate,
    DoorState,
    ErrorLog,
    FingerTemplate,
    IdCard,
    OtherRecord,
    Rejected,
    UserInfo,
    UserPhoto,
)
from tests.vectors import vector

HT = "\t"

# -- generation (§1) ---------------------------------------------------------


@pytest.mark.parametrize(
    "pushver, device_type, expected",
    [
        ("3.1.2", "acc", True),  # tests/vectors/real/023
        ("2.4.1", "acc", True),  # DeviceType wins
        ("3.1.2", "att", False),
        ("3.1.2", " ACC ", True),
        ("3.0.1", "", True),
        ("2.4.1", "", False),
        ("2.2.14", "", False),
        ("", "", False),  # the safe guess
        ("Ver 3.1.0S", "", True),
        ("x", "", False),
    ],
)
def test_generation_from_the_handshake(pushver: str, device_type: str, expected: bool) -> None:
    assert is_push3(pushver, device_type) is expected


def test_real_handshake_is_push3() -> None:
    v = vector("023")
    assert is_push3(v.param("pushver"), v.param("DeviceType"))


@pytest.mark.parametrize(
    "endpoint, table, cookie, expected",
    [
        ("registry", "", b"", True),
        ("/iclock/push", "", b"", True),
        ("push.aspx", "", b"", True),
        ("cdata", "rtlog", b"", True),
        ("cdata", "tabledata", b"", True),
        ("cdata", "ATTLOG", b"", False),
        ("ping", "", b"token=309627e196822d1ad8b08422b3909d6c", True),
        ("getrequest", "", b"", False),
    ],
)
def test_later_evidence_of_push3(endpoint: str, table: str, cookie: bytes, expected: bool) -> None:
    assert push3_evidence(endpoint, table, cookie) is expected


# -- registry (§2.2) ------------------------------------------------------------


def test_real_registry_body_gives_every_key_with_values_as_sent() -> None:
    body = vector("024").body
    registry = parse_registry(body)
    assert len(registry) == body.count(b",") + 1 == 77  # no value holds a comma
    assert registry["DeviceType"] == "acc"
    assert registry["~DeviceName"] == "SenseFace 3A"
    assert registry["PushVersion"] == "Ver 3.1.0S-20241113"
    assert registry["NewNormalEventTypes"] == ""
    assert (
        registry["EventTypes"] == "FF0FF03DBA26018033060000F00000000000000000000000007703F007860100"
    )
    assert registry["MultiBioVersion"] == "0:13.0:0:0:0:0:0:0:0:40.1"
    assert registry["~SerialNumber"] == "VGU6251500098"
    assert registry["AutoServerFunOn"] == "1"
    assert list(registry)[-1] == "SipEnableUnit" and registry["SipEnableUnit"] == "1"


@pytest.mark.parametrize(
    "body, expected",
    [
        (b"~OEMVendor=ACME CO., LTD.,MAC=00:17", {"~OEMVendor": "ACME CO., LTD.", "MAC": "00:17"}),
        (b"a=b, c=d,e=f", {"a": "b, c=d", "e": "f"}),  # key with a space: part of the value
        (b"a=1,=2,b=", {"a": "1,=2", "b": ""}),  # empty key: part of the value
        (b"a=1,b=2,a=3", {"a": "3", "b": "2"}),  # latest wins
        (b"a=1\r\nb=2\n", {"a": "1", "b": "2"}),  # line breaks separate too
        (b"a= padded ", {"a": " padded "}),
        (b"junk,a=1", {"a": "1"}),
        (b"", {}),
        (b"\r\n", {}),
    ],
)
def test_comma_rule(body: bytes, expected: Dict[str, str]) -> None:
    assert parse_registry(body) == expected


def test_comma_list_without_pairs_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse_registry(b"no pairs here")


def test_registry_replies() -> None:
    assert registry_reply("k3Vq9TzR2mWp8sLx4YbN6cDf1HgJ5aEu") == (
        b"RegistryCode=k3Vq9TzR2mWp8sLx4YbN6cDf1HgJ5aEu"
    )
    assert push3.REGISTRY_REFUSED == b"406"
    assert session_cookie("5F0C2A9B7D1E4C3A8B6F0D2E1A9C7B45") == (
        b"JSESSIONID=5F0C2A9B7D1E4C3A8B6F0D2E1A9C7B45; Path=/; HttpOnly"
    )
    with pytest.raises(ValueError):
        registry_reply("abc\r\nX=1")
    with pytest.raises(ValueError):
        session_cookie("a;b")


# -- configuration (§2.1, §2.3) ----------------------------------------------------

SESSION = "5F0C2A9B7D1E4C3A8B6F0D2E1A9C7B45"
CONFIG = (
    b"ServerVersion=3.1.2\r\nServerName=pushd\r\nPushProtVer=3.1.2\r\nPushVersion=3.1.2\r\n"
    b"ErrorDelay=60\r\nRequestDelay=10\r\nTransTimes=00:00;14:00\r\nTransInterval=1\r\n"
    b"TransTables=User Transaction\r\nRealtime=1\r\nSessionID=" + SESSION.encode() + b"\r\n"
    b"TimeoutSec=20\r\nBioPhotoFun=1\r\nBioDataFun=1"
)


def test_push_reply_default_configuration_byte_for_byte() -> None:
    assert push_reply(push_options(SESSION)) == CONFIG


def test_push_reply_echoes_the_device_lists_and_security_level() -> None:
    registry = parse_registry(vector("024").body)
    registry.update({"IRTempDetectionFunOn": "1", "DevNSLevel": "2"})
    assert push_reply(push_options(SESSION, registry)) == CONFIG + (
        b"\r\nMultiBioDataSupport=0:1:0:0:0:0:0:0:0:1"
        b"\r\nMultiBioPhotoSupport=0:0:0:0:0:0:0:0:0:1"
        b"\r\nIRTempUnitTrans=0\r\nSvrNSLevel=2"
    )


def test_settings_override_in_place_and_protocol_version_renames_both() -> None:
    options = dict(push_options(SESSION, settings={"RequestDelay": "5", "PushProtVer": "3.0.1"}))
    assert options["RequestDelay"] == "5"
    assert options["PushProtVer"] == options["PushVersion"] == "3.0.1"
    pairs = push_options(SESSION, settings={"Extra": "x"})
    assert pairs[-1] == ("Extra", "x") and [k for k, _ in pairs].index("RequestDelay") == 5


@pytest.mark.parametrize("settings", [{"RequestDelay": "5\r\nX=1"}, {"": "1"}, {"A=B": "1"}])
def test_settings_cannot_inject_lines(settings: Dict[str, str]) -> None:
    with pytest.raises(ValueError):
        push_options(SESSION, settings=settings)


def test_handshake_reply_unregistered_and_registered() -> None:
    assert handshake_reply(None) == b"OK"
    code = "k3Vq9TzR2mWp8sLx4YbN6cDf1HgJ5aEu"
    assert handshake_reply(code, push_options(SESSION)) == (
        b"registry=ok\r\nRegistryCode=" + code.encode() + b"\r\n" + CONFIG
    )


def _fake_random(data: bytes) -> Callable[[int], bytes]:
    stream = itertools.cycle(data)
    return lambda n: bytes(next(stream) for _ in range(n))


def test_registry_code_is_32_alphanumerics_without_bias() -> None:
    # 0..61 map to the alphabet in order; 248..255 are skipped
    code = new_registry_code(_fake_random(bytes([0, 255, 25, 26, 61, 62, 248])))
    assert code == ("azA9a" * 7)[:32]
    real = new_registry_code()
    assert len(real) == 32 and real.isalnum() and real != new_registry_code()
    with pytest.raises(ValueError):
        new_registry_code(lambda n: b"\xff" * n)


def test_session_id_is_32_upper_case_hex() -> None:
    assert new_session_id(lambda n: bytes(range(n))) == "000102030405060708090A0B0C0D0E0F"
    assert len(new_session_id()) == 32
    with pytest.raises(ValueError):
        new_session_id(lambda n: b"\x00")


# -- cookie and token (§2.4) ----------------------------------------------------------


def test_real_push_cookie_has_token_and_timestamp_joined_by_a_comma() -> None:
    header = dict(vector("025").headers)[b"cookie"]
    assert parse_cookie(header) == {
        "token": "ae2802e9d30031f23b6b243ca9ada504",
        "timestamp": "2026-02-23-16-20-51",
    }
    assert parse_cookie(dict(vector("029").headers)[b"cookie"]) == {
        "token": "309627e196822d1ad8b08422b3909d6c"
    }


@pytest.mark.parametrize(
    "header, expected",
    [
        (b"token=AB, timestamp=T", {"token": "AB", "timestamp": "T"}),
        (b"token=AB; JSESSIONID=x", {"token": "AB", "jsessionid": "x"}),
        (b" Token = AB ;;, ", {"token": "AB"}),
        (b"token=1,token=2", {"token": "1"}),
        (b"novalue", {}),
        (b"", {}),
        (b"\xff=\xfe", {"\xff": "\xfe"}),
    ],
)
def test_cookie_is_parsed_leniently(header: bytes, expected: Dict[str, str]) -> None:
    assert parse_cookie(header) == expected


RC, SN = "k3Vq9TzR2mWp8sLx4YbN6cDf1HgJ5aEu", "QZX7250100042"
STEADY = "3aaefd78c23987223768103c43abe22c"  # md5(RC + SN + SessionID), the notes' example
PUSHED = "fbbe2b6396e4616967febd0838ea0351"  # md5(RC + SN + timestamp)


@pytest.mark.parametrize(
    "token, session_id, timestamp, ok",
    [
        (STEADY, SESSION, None, True),
        (STEADY.upper(), SESSION, None, True),
        (f"  {STEADY} ", SESSION, None, True),
        (PUSHED, SESSION, "2026-05-04-09-15-02", True),
        (PUSHED, None, "2026-05-04-09-15-02", True),
        (STEADY, SESSION, "2026-05-04-09-15-02", True),
        (PUSHED, SESSION, None, False),  # no timestamp cookie, no timestamp variant
        (PUSHED, SESSION, "2026-05-04-09-15-03", False),
        ("0" * 32, SESSION, "2026-05-04-09-15-02", False),
        (STEADY[:-1], SESSION, None, False),
        ("", SESSION, None, False),
        (STEADY, None, None, False),
        ("\u00e9" * 32, SESSION, None, False),
    ],
)
def test_token_validation(token: str, session_id: Any, timestamp: Any, ok: bool) -> None:
    assert token_valid(token, RC, SN, session_id, timestamp) is ok


def test_token_needs_a_registry_code() -> None:
    token = hashlib.md5((SN + SESSION).encode()).hexdigest()
    assert not token_valid(token, "", SN, SESSION)


# -- rtlog (§3.2-3.3) -----------------------------------------------------------------


def test_real_face_punch_gives_one_event_and_one_punch() -> None:
    assert parse_rtlog(vector("029").body) == [
        AccessEvent(
            time="2026-02-09T18:23:02",
            pin="1",
            card="0",
            door="1",
            event="3",
            event_name="multi-person open",
            inout="0",
            verify="15",
            index="15",
            fields=(
                ("time", "2026-02-09 18:23:02"),
                ("pin", "1"),
                ("cardno", "0"),
                ("eventaddr", "1"),
                ("event", "3"),
                ("inoutstatus", "0"),
                ("verifytype", "15"),
                ("index", "15"),
                ("sitecode", "0"),
                ("linkid", "0"),
                ("maskflag", "0"),
                ("temperature", "0"),
                ("convtemperature", "0"),
            ),
        ),
        AttLog(
            pin="1",
            time="2026-02-09T18:23:02",
            status="0",
            verify="15",
            workcode="",
            extra=(
                "cardno=0",
                "eventaddr=1",
                "event=3",
                "index=15",
                "sitecode=0",
                "linkid=0",
                "maskflag=0",
                "temperature=0",
                "convtemperature=0",
            ),
        ),
    ]


def _rtlog(pin: str, event: int, index: int = 1) -> bytes:
    fields = [
        "time=2026-05-04 09:21:07",
        f"pin={pin}",
        "cardno=0",
        "eventaddr=1",
        f"event={event}",
        "inoutstatus=1",
        "verifytype=200",
        f"index={index}",
    ]
    return HT.join(fields).encode() + b"\r\n"


def test_device_and_denied_events_are_not_punches() -> None:
    body = _rtlog("0", 206) + _rtlog("", 200) + _rtlog("1001", 27) + _rtlog("1001", 102)
    records = parse_rtlog(body)
    assert [type(r) for r in records] == [AccessEvent] * 4
    assert [(r.pin, r.event, r.event_name) for r in records] == [  # type: ignore[union-attr]
        ("0", "206", "device started"),
        ("", "200", "door opened"),
        ("1001", "27", "not registered"),
        ("1001", "102", "door forced open"),
    ]


@pytest.mark.parametrize("code", sorted(push3.PUNCH_EVENTS))
def test_every_granting_event_with_a_person_is_a_punch(code: int) -> None:
    event, punch = parse_rtlog(_rtlog("1001", code))
    assert isinstance(event, AccessEvent) and isinstance(punch, AttLog)
    assert (punch.pin, punch.status, punch.verify, punch.workcode) == ("1001", "1", "200", "")
    [nobody] = parse_rtlog(_rtlog("0", code))
    assert isinstance(nobody, AccessEvent) and nobody.event == str(code)


@pytest.mark.parametrize(
    "code, pin, kind",
    [
        (0, "1", "punch"),
        (5, "1", "punch"),
        (6, "1", "event"),
        (14, "1", "punch"),
        (19, "1", "punch"),
        (20, "1", "denied"),
        (99, "1", "denied"),
        (100, "1", "event"),
        (203, "1", "punch"),
        (222, "A7", "punch"),
        (232, "1", "punch"),
        (255, "1", "event"),
        (0, "0", "event"),
        (0, "", "event"),
        (0, " 0 ", "event"),
        (27, "0", "event"),
        (4000, "1", "event"),
    ],
)
def test_classification_rule(code: int, pin: str, kind: str) -> None:
    assert classify_event(code, pin) == kind


def test_event_names_cover_the_table_and_unknown_codes() -> None:
    assert push3.event_name(0) == "verified, door opened"
    assert push3.event_name(6010) == "emergency battery low"
    assert push3.event_name(46) == "unknown event"
    assert push3.VERIFY_MODES[15] == "face"
    assert len(push3.EVENT_NAMES) > 200


def test_malformed_rtlog_lines_are_quarantined() -> None:
    body = (
        _rtlog("1", 0)
        + b"garbage\r\n"
        + b"time=2026-13-01 00:00:00\tpin=1\tevent=0\r\n"
        + b"time=2026-05-04 09:21:07\tpin=1\tevent=x\r\n"
        + b"time=2026-05-04 09:21:07\tpin=1\r\n"
    )
    records = parse_rtlog(body)
    assert [type(r) for r in records[:2]] == [AccessEvent, AttLog]
    assert [(r.table, r.reason) for r in records[2:]] == [  # type: ignore[union-attr]
        ("rtlog", "not a key=value record"),
        ("rtlog", "invalid time"),
        ("rtlog", "invalid event"),
        ("rtlog", "invalid event"),
    ]


def test_rtlog_of_nothing_but_junk_is_a_protocol_error_and_empty_is_empty() -> None:
    with pytest.raises(ProtocolError, match="no valid rtlog record"):
        parse_rtlog(b"junk\r\n\x00\x01")
    assert parse_rtlog(b"") == [] and parse_rtlog(b"\r\n") == []


def test_undecodable_rtlog_line_keeps_its_bytes() -> None:
    line = b"time=2026-05-04 09:21:07\tpin=1\tevent=0\tname=\xff"
    event, punch = parse_rtlog(line)
    assert event.raw == line and punch.raw == line  # type: ignore[union-attr]


# -- rtstate (§3.5) ---------------------------------------------------------------------


def test_door_state_lines() -> None:
    body = (
        b"time=2026-05-04 09:22:31\tsensor=01\trelay=00\talarm=0000000000000000\tdoor=01\r\n"
        b"time=bad\tsensor=01\r\n"
    )
    state, bad = parse_rtstate(body)
    assert state == DoorState(
        time="2026-05-04T09:22:31",
        sensor="01",
        relay="00",
        alarm="0000000000000000",
        door="01",
        fields=(
            ("time", "2026-05-04 09:22:31"),
            ("sensor", "01"),
            ("relay", "00"),
            ("alarm", "0000000000000000"),
            ("door", "01"),
        ),
    )
    assert bad == Rejected("rtstate", b"time=bad\tsensor=01", "invalid time")
    with pytest.raises(ProtocolError):
        parse_rtstate(b"time=bad")


# -- tabledata (§3.6) -------------------------------------------------------------------


def _user(uid: str, pin: str, name: str) -> UserInfo:
    return UserInfo(
        pin=pin,
        name=name,
        privilege="14",
        password="",
        card="",
        group="1",
        verify="0",
        fields=(
            ("uid", uid),
            ("cardno", ""),
            ("pin", pin),
            ("password", ""),
            ("group", "1"),
            ("starttime", "0"),
            ("endtime", "0"),
            ("name", name),
            ("privilege", "14"),
            ("disable", "0"),
            ("verify", "0"),
        ),
    )


def test_real_user_table_gives_three_users() -> None:
    v = vector("031")
    records = parse_tabledata(v.param("tablename"), v.body)
    assert records == [
        _user("1", "1", "Biseshar Borman"),
        _user("2", "120", "tan"),
        _user("3", "2", "g"),
    ]
    assert row_count(records) == int(v.param("count")) == 3
    assert tabledata_reply(v.param("tablename"), row_count(records)) == b"user=3"


def test_real_biophoto_is_intact() -> None:
    v = vector("033")
    [photo] = parse_tabledata(v.param("tablename"), v.body)
    assert isinstance(photo, BioPhoto)
    assert (photo.pin, photo.no, photo.index, photo.file_name, photo.type, photo.size) == (
        "1",
        "0",
        "0",
        "1.jpg",
        "9",
        "50204",
    )
    assert photo.size_ok is True and len(photo.content) == 50204
    assert base64.b64decode(photo.content)[:3] == b"\xff\xd8\xff"
    assert ("content", photo.content) not in photo.fields
    assert tabledata_reply("biophoto", row_count([photo])) == b"biophoto=1"


TMP = base64.b64encode(b"template bytes").decode()


def test_biodata_templatev10_userpic_identitycard_errorlog() -> None:
    body = "\r\n".join(
        [
            f"biodata pin=1\tno=0\tindex=0\tvalid=1\tduress=0\ttype=1\tmajorver=13"
            f"\tminorver=0\tformat=0\ttmp={TMP}",
            f"templatev10 size={len(TMP)}\tuid=1\tpin=7\tfingerid=22\tvalid=1\ttemplate={TMP}",
            f"userpic pin=1\tfilename=1.jpg\tsize={len(TMP)}\tcontent={TMP}",
            "identitycard pin=0\tSN_Num=S1\tID_Num=110\tName=Ana",
            "errorlog errcode=D01E0001\terrmsg=no face\tdataorigin=cmd\tcmdid=12\tadditional=e30=",
            "APList ecn=0\tssid=lab\trssi=-40\tmac=aa",
        ]
    ).encode()
    bio, finger, pic, card, error, other = parse_tabledata("biodata", body)
    assert bio == BioTemplate(
        pin="1",
        no="0",
        index="0",
        valid="1",
        duress="0",
        type="1",
        major_ver="13",
        minor_ver="0",
        format="0",
        template=TMP,
        size_ok=True,
        fields=(
            ("pin", "1"),
            ("no", "0"),
            ("index", "0"),
            ("valid", "1"),
            ("duress", "0"),
            ("type", "1"),
            ("majorver", "13"),
            ("minorver", "0"),
            ("format", "0"),
        ),
    )
    assert finger == FingerTemplate(
        pin="7",
        fid="6",
        size=str(len(TMP)),
        valid="3",  # fingerid 22 = duress finger 6
        template=TMP,
        size_ok=True,
        fields=(
            ("size", str(len(TMP))),
            ("uid", "1"),
            ("pin", "7"),
            ("fingerid", "22"),
            ("valid", "1"),
        ),
    )
    assert isinstance(pic, UserPhoto) and (pic.pin, pic.file_name, pic.size_ok) == (
        "1",
        "1.jpg",
        True,
    )
    assert card == IdCard(
        pin="0",
        id_num="110",
        sn_num="S1",
        name="Ana",
        fields=(("pin", "0"), ("SN_Num", "S1"), ("ID_Num", "110"), ("Name", "Ana")),
    )
    assert isinstance(error, ErrorLog)
    assert (error.err_code, error.err_msg, error.data_origin, error.cmd_id) == (
        "D01E0001",
        "no face",
        "cmd",
        "12",
    )
    assert other == OtherRecord(
        "APList", (("ecn", "0"), ("ssid", "lab"), ("rssi", "-40"), ("mac", "aa"))
    )


def test_lines_without_prefix_take_the_tablename_and_unknown_tables_are_kept() -> None:
    [user] = parse_tabledata("user", b"uid=1\tpin=5\tname=Ana Lima\tcardno=[15CD5B07]")
    assert isinstance(user, UserInfo)
    assert (user.pin, user.name, user.card) == ("5", "Ana Lima", "[15CD5B07]")
    [other] = parse_tabledata("DeviceAuthorize", b"SN=X\tOnline=1")
    assert other == OtherRecord("DeviceAuthorize", (("SN", "X"), ("Online", "1")))
    [prefixed] = parse_tabledata("user", b"user\tuid=1\tpin=6")  # prefix followed by TAB
    assert isinstance(prefixed, UserInfo) and prefixed.pin == "6"


def test_records_without_pin_are_quarantined() -> None:
    records = parse_tabledata("user", b"user uid=1\tpin=\tname=x\r\nuser uid=2\tpin=2\r\n")
    assert records[0] == Rejected("user", b"user uid=1\tpin=\tname=x", "user record without pin")
    assert isinstance(records[1], UserInfo)
    with pytest.raises(ProtocolError, match="no valid user record"):
        parse_tabledata("user", b"user uid=1\r\n")


def test_attphoto_rows_give_metadata_and_image_bytes() -> None:
    jpeg = b"\xff\xd8\xff\xe0 fake jpeg"
    photo = base64.b64encode(jpeg).decode()
    body = (
        f"pin=20260504092107-1001.jpg\tsn=QZX7250100042\tsize={len(jpeg)}\tphoto={photo}\r\n"
        "pin=x.jpg\tphoto=***\r\n"
    ).encode()
    (meta, image), bad = parse_attphotos(body)  # type: ignore[misc]
    assert image == jpeg
    assert meta == AttPhoto(
        name="20260504092107-1001.jpg",
        time="2026-05-04T09:21:07",
        photo_type="",
        pin="1001",
        id_num="",
        size=str(len(jpeg)),
        stored_size=len(jpeg),
        sha256=hashlib.sha256(jpeg).hexdigest(),
        headers=(
            ("pin", "20260504092107-1001.jpg"),
            ("sn", "QZX7250100042"),
            ("size", str(len(jpeg))),
        ),
    )
    assert bad == Rejected("ATTPHOTO", b"pin=x.jpg\tphoto=***", "photo= is not base64")
    assert parse_tabledata("ATTPHOTO", body) == [meta, bad]
    assert tabledata_reply("ATTPHOTO", row_count([meta, bad])) == b"ATTPHOTO=2"
    with pytest.raises(ProtocolError):
        parse_attphotos(b"sn=1\tphoto=QUJD")


def test_transaction_rows_decode_time_second_and_give_punches() -> None:
    seconds = encode_time(datetime(2026, 5, 4, 9, 21, 7))
    row = (
        f"transaction cardno=0\tpin=1001\tverified=15\tdoorid=1\teventtype=0\tinoutstate=0"
        f"\ttime_second={seconds}\tindex=42\tsitecode=0\tdevid=1\tmaskflag=0"
    ).encode()
    event, punch = parse_tabledata("transaction", row)
    assert isinstance(event, AccessEvent) and isinstance(punch, AttLog)
    assert (event.time, event.door, event.event, event.inout, event.verify, event.index) == (
        "2026-05-04T09:21:07",
        "1",
        "0",
        "0",
        "15",
        "42",
    )
    assert punch.extra[:4] == ("cardno=0", "doorid=1", "eventtype=0", "index=42")
    assert row_count([event, punch]) == 1
    february_30 = encode_time(datetime(2026, 2, 28)) + 2 * 86400
    for value in (b"x", str(february_30).encode()):
        bad_row = row.replace(b"time_second=" + str(seconds).encode(), b"time_second=" + value)
        assert parse_tabledata("transaction", row + b"\r\n" + bad_row)[2:] == [
            Rejected("transaction", bad_row, "invalid time_second")
        ]


def test_tabledata_reply_is_the_tablename_as_received() -> None:
    assert tabledata_reply("user", 0) == b"user=0"
    assert tabledata_reply("ATTPHOTO", 12) == b"ATTPHOTO=12"
    with pytest.raises(ValueError):
        tabledata_reply("user", -1)


# -- querydata (§4.8) -------------------------------------------------------------------


def test_querydata_count_options_tabledata_vmtable() -> None:
    count = parse_querydata({"type": "count", "cmdid": "7", "tablename": "user"}, b"user=5")
    assert count == QueryData("count", "7", "user", None, None, None, (), {"user": "5"}, b"OK")
    options = parse_querydata(
        {"TYPE": "options", "CmdId": "8", "count": "1", "packcnt": "1", "packidx": "1"},
        b"~DeviceName=SenseFace 3A,FWVersion=ZAM70",
    )
    assert options.values == {"~DeviceName": "SenseFace 3A", "FWVersion": "ZAM70"}
    assert (options.count, options.pack_count, options.pack_index, options.reply) == (
        1,
        1,
        1,
        b"OK",
    )
    rows = parse_querydata(
        {
            "type": "tabledata",
            "cmdid": "9",
            "tablename": "user",
            "count": "3",
            "packcnt": "2",
            "packidx": "1",
        },
        vector("031").body,
    )
    assert [r.name for r in rows.records] == ["Biseshar Borman", "tan", "g"]  # type: ignore[union-attr]
    assert (rows.cmd_id, rows.count, rows.pack_count, rows.pack_index) == ("9", 3, 2, 1)
    assert rows.reply == b"user=3"
    scan = parse_querydata(
        {"type": "vmtable", "tablename": "[APList]"}, b"APList ecn=0\tssid=lab\trssi=-40\tmac=aa"
    )
    assert scan.reply == b"APList=1" and isinstance(scan.records[0], OtherRecord)


def test_querydata_unknown_type_and_missing_tablename() -> None:
    other = parse_querydata({"type": "later", "packcnt": "x"}, b"anything")
    assert (other.type, other.records, other.values, other.pack_count, other.reply) == (
        "later",
        (),
        {},
        None,
        b"OK",
    )
    with pytest.raises(ProtocolError):
        parse_querydata({"type": "tabledata"}, b"user pin=1")


# -- time (§5.2) ------------------------------------------------------------------------


def test_worked_example_of_the_notes() -> None:
    now = calendar.timegm((2026, 5, 4, 7, 15, 2, 0, 0, 0))
    assert encode_time(datetime(2026, 5, 4, 7, 15, 2)) == 846659702
    assert decode_time(846659702) == datetime(2026, 5, 4, 7, 15, 2)
    assert rtdata_time(now, 480) == b"DateTime=846659702,ServerTZ=+0800"
    assert rtdata_time(now + 0.9, 480) == b"DateTime=846659702,ServerTZ=+0800"


def test_every_month_counts_31_days() -> None:
    assert encode_time(datetime(2026, 2, 28, 23, 59, 59)) == 840758399
    assert encode_time(datetime(2026, 3, 1)) == 841017600
    assert encode_time(datetime(2000, 1, 1)) == 0
    with pytest.raises(ValueError):
        decode_time(encode_time(datetime(2026, 2, 28)) + 2 * 86400)  # 30 February
    with pytest.raises(ValueError):
        encode_time(datetime(1999, 12, 31))
    with pytest.raises(ValueError):
        decode_time(-1)


@pytest.mark.parametrize(
    "minutes, text",
    [(480, "+0800"), (-180, "-0300"), (330, "+0530"), (0, "+0000"), (-570, "-0930")],
)
def test_server_tz(minutes: int, text: str) -> None:
    assert push3.format_server_tz(minutes) == text
    assert rtdata_time(0 + 946684800, minutes) == f"DateTime=0,ServerTZ={text}".encode()


def test_server_tz_out_of_range() -> None:
    with pytest.raises(ValueError):
        push3.format_server_tz(24 * 60)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2130, 12, 31)))
def test_time_encoding_round_trips(when: datetime) -> None:
    when = when.replace(microsecond=0)
    assert decode_time(encode_time(when)) == when


# -- commands (§4) ----------------------------------------------------------------------

B64 = "QUJD"  # b"ABC"

COMMANDS3: List[Any] = [
    ("reboot", {}, "CONTROL DEVICE 03000000"),
    ("unlock", {}, "CONTROL DEVICE 01010105"),
    ("unlock", {"door": 2, "seconds": 255}, "CONTROL DEVICE 010201FF"),
    ("unlock", {"door": 16, "seconds": "10"}, "CONTROL DEVICE 0110010A"),
    ("unalarm", {}, "CONTROL DEVICE 02000000"),
    ("unalarm", {"door": 1}, "CONTROL DEVICE 02010000"),
    ("normal_open", {"door": 1}, "CONTROL DEVICE 04010100"),
    ("normal_open", {"door": 1, "on": False}, "CONTROL DEVICE 04010000"),
    ("set_option", {"key": "Door1Drivertime", "value": 5}, "SET OPTIONS Door1Drivertime=5"),
    (
        "set_options",
        {"options": {"IPAddress": "10.0.0.9", "NetMask": "255.255.255.0"}},
        "SET OPTIONS IPAddress=10.0.0.9,NetMask=255.255.255.0",
    ),
    ("get_options", {"names": ["IPAddress", "~DeviceName"]}, "GET OPTIONS IPAddress,~DeviceName"),
    ("get_options", {"names": "IPAddress, MAC"}, "GET OPTIONS IPAddress,MAC"),
    ("set_time", {"time": "2026-05-04 07:15:02"}, "SET OPTIONS DateTime=846659702"),
    ("clear_log", {}, "DATA DELETE transaction *"),
    ("clear_biodata", {}, "DATA DELETE biodata *"),
    ("count_data", {"table": "user"}, "DATA COUNT user"),
    ("count_data", {"table": "biophoto", "type": 9}, "DATA COUNT biophoto Type=9"),
    ("query_users", {}, "DATA QUERY tablename=user,fielddesc=*,filter=*"),
    ("query_users", {"pin": "1001"}, "DATA QUERY tablename=user,fielddesc=*,filter=Pin=1001"),
    ("query_attlog", {}, "DATA QUERY tablename=transaction,fielddesc=*,filter=*"),
    (
        "query_attlog",
        {"new_only": 1},
        "DATA QUERY tablename=transaction,fielddesc=*,filter=NewRecord",
    ),
    (
        "query_attlog",
        {"start": "2026-05-01 00:00:00", "end": "2026-05-02T00:00:00"},
        "DATA QUERY tablename=transaction,fielddesc=*,filter="
        "starttime=2026-05-01 00:00:00\tendtime=2026-05-02 00:00:00",
    ),
    ("query_fingerprints", {}, "DATA QUERY tablename=templatev10,fielddesc=*,filter=*"),
    (
        "query_fingerprints",
        {"pin": 1001, "fid": 6},
        "DATA QUERY tablename=templatev10,fielddesc=*,filter=Pin=1001\tFingerID=6",
    ),
    (
        "query_biodata",
        {"type": 1, "pin": "1001", "no": 6},
        "DATA QUERY tablename=biodata,fielddesc=*,filter=Type=1\tPin=1001\tNo=6",
    ),
    ("query_biodata", {"type": 9}, "DATA QUERY tablename=biodata,fielddesc=*,filter=Type=9"),
    ("query_data", {"table": "[APList]"}, "DATA QUERY tablename=[APList],fielddesc=*,filter=*"),
    (
        "query_data",
        {"table": "biophoto", "conditions": {"Type": 9, "Pin": "1"}},
        "DATA QUERY tablename=biophoto,fielddesc=*,filter=Type=9\tPin=1",
    ),
    (
        "query_data",
        {"table": "transaction", "new_only": True},
        "DATA QUERY tablename=transaction,fielddesc=*,filter=NewRecord",
    ),
    ("update_user", {"pin": "1001"}, "DATA UPDATE user Pin=1001"),
    (
        "update_user",
        {
            "pin": "1001",
            "name": "Ana Lima",
            "privilege": 14,
            "password": "123",
            "card": "3055217",
            "group": 1,
            "start_time": 0,
            "end_time": "20261231",
        },
        "DATA UPDATE user CardNo=3055217\tPin=1001\tPassword=123\tGroup=1\tStartTime=0"
        "\tEndTime=20261231\tName=Ana Lima\tPrivilege=14",
    ),
    (
        "update_user_authorize",
        {"pin": "1001"},
        "DATA UPDATE userauthorize Pin=1001\tAuthorizeTimezoneId=1\tAuthorizeDoorId=1",
    ),
    (
        "update_user_authorize",
        {"pin": "1001", "doors": 15, "timezone": 2, "dev_id": 3},
        "DATA UPDATE userauthorize Pin=1001\tAuthorizeTimezoneId=2\tAuthorizeDoorId=15\tDevID=3",
    ),
    (
        "update_idcard",
        {"pin": "1", "id_num": "110", "sn_num": "S1", "name": "Ana", "valid_info": "2020-2030"},
        "DATA UPDATE identitycard Pin=1\tSN_Num=S1\tID_Num=110\tName=Ana\tValid_Info=2020-2030",
    ),
    (
        "update_fingerprint",
        {"pin": "1", "fid": 6, "template": B64},
        f"DATA UPDATE templatev10 Pin=1\tFingerID=6\tValid=1\tTemplate={B64}",
    ),
    (
        "update_fingerprint",
        {"pin": "1", "fid": 6, "template": B64, "valid": 3},
        f"DATA UPDATE templatev10 Pin=1\tFingerID=6\tValid=3\tTemplate={B64}",
    ),
    (
        "update_biodata",
        {"pin": "1", "type": 9, "template": B64, "major_ver": 40, "minor_ver": 1},
        "DATA UPDATE biodata pin=1\tno=0\tindex=0\tvalid=1\tduress=0\ttype=9\tmajorver=40"
        f"\tminorver=1\tformat=0\ttmp={B64}",
    ),
    (
        "update_userpic",
        {"pin": "1", "content": B64},
        f"DATA UPDATE userpic pin=1\tsize=4\tformat=0\tcontent={B64}",
    ),
    (
        "update_userpic",
        {"pin": "1", "url": "/photos/1.jpg"},
        "DATA UPDATE userpic pin=1\tsize=0\tformat=1\turl=/photos/1.jpg",
    ),
    (
        "update_biophoto",
        {"pin": "1", "type": 9, "content": B64},
        f"DATA UPDATE biophoto PIN=1\tType=9\tSize=4\tContent={B64}\tFormat=0",
    ),
    (
        "update_biophoto",
        {"pin": "1", "type": 9, "url": "http://x/1.jpg", "post_back_tmp": 1},
        "DATA UPDATE biophoto PIN=1\tType=9\tSize=0\tContent=\tFormat=1\tUrl=http://x/1.jpg"
        "\tPostBackTmpFlag=1",
    ),
    ("delete_user", {"pin": "1001"}, "DATA DELETE user Pin=1001"),
    ("delete_user_authorize", {"pin": "1001"}, "DATA DELETE userauthorize Pin=1001"),
    ("delete_fingerprint", {"pin": "1001"}, "DATA DELETE templatev10 Pin=1001"),
    (
        "delete_fingerprint",
        {"pin": "1001", "fid": 6},
        "DATA DELETE templatev10 Pin=1001\tFingerID=6",
    ),
    ("delete_biodata", {"pin": "1001"}, "DATA DELETE biodata pin=1001"),
    (
        "delete_biodata",
        {"pin": "1001", "type": 9, "no": 0},
        "DATA DELETE biodata Type=9\tpin=1001\tno=0",
    ),
    ("delete_userpic", {"pin": "1001"}, "DATA DELETE userpic pin=1001"),
    ("delete_biophoto", {"pin": "1001"}, "DATA DELETE biophoto PIN=1001"),
    (
        "enroll_bio",
        {"type": 9, "pin": "1001", "retry": 3, "overwrite": 1},
        "ENROLL_BIO TYPE=9\tNO=0\tPIN=1001\tRETRY=3\tOVERWRITE=1\tMODE=1",
    ),
    (
        "upgrade",
        {"url": "fw/emfw.cfg", "checksum": "ab12", "size": 10},
        "UPGRADE checksum=ab12,url=fw/emfw.cfg,size=10",
    ),
    (
        "upgrade",
        {"url": "fw/emfw.cfg", "checksum": "ab12", "size": 10, "method": 2},
        "UPGRADE type=1,checksum=ab12,size=10,url=fw/emfw.cfg",
    ),
    (
        "upgrade",
        {"url": "fw/emfw.cfg", "checksum": "ab12", "size": 10, "method": 3},
        "UPGRADE checksum=ab12,size=10,url=fw/emfw.cfg,supportsubcontracting=1",
    ),
    ("raw", {"command": "Test Host Address=10.0.0.5:8080"}, "Test Host Address=10.0.0.5:8080"),
]


@pytest.mark.parametrize("kind, params, command", COMMANDS3)
def test_every_3x_builder_writes_the_3x_syntax(
    kind: str, params: Dict[str, Any], command: str
) -> None:
    built = build3(kind, params)
    family = "upgrade" if kind == "upgrade" else "standard"
    assert built == Built(command, "raw" if kind == "raw" else kind, family)
    assert format_commands([("1", built.command)]) == f"C:1:{command}".encode()


def test_every_3x_kind_is_tested() -> None:
    assert {kind for kind, _, _ in COMMANDS3} == set(push3.BUILDERS3)


UNAVAILABLE = sorted(set(BUILDERS) - set(push3.BUILDERS3))


def test_the_2x_kinds_without_a_3x_form() -> None:
    assert UNAVAILABLE == [
        "check",
        "clear_data",
        "clear_photo",
        "delete_adpic",
        "delete_face",
        "delete_finger_vein",
        "delete_sms",
        "delete_workcode",
        "enroll_fp",
        "enroll_mf",
        "get_file",
        "info",
        "log",
        "put_file",
        "query_attphoto",
        "reload_options",
        "shell",
        "update_access_combination",
        "update_access_group",
        "update_access_holiday",
        "update_access_timezone",
        "update_adpic",
        "update_blacklist",
        "update_face",
        "update_finger_vein",
        "update_shortcut_key",
        "update_sms",
        "update_user_sms",
        "update_workcode",
        "verify_sum",
    ]


@pytest.mark.parametrize("kind", UNAVAILABLE)
def test_kinds_without_a_3x_form_are_refused_by_name(kind: str) -> None:
    with pytest.raises(InvalidCommand, match=f"^{kind}: not available for PUSH 3.x devices$"):
        build3(kind, {})


@pytest.mark.parametrize(
    "kind, params, reason",
    [
        ("nope", {}, "kind: unknown command kind 'nope'"),
        ("unlock", {"door": 256}, "door: must be an integer from 0 to 255"),
        ("unlock", {"pin": 1}, "unlock: unknown parameter(s) pin"),
        ("update_user", {}, "update_user: missing parameter(s) pin"),
        ("update_user", {"pin": "1", "tz": "1"}, "update_user: unknown parameter(s) tz"),
        ("update_user", {"pin": "1", "name": "a\tb"}, "name: TAB is not allowed in a value"),
        ("update_user", {"pin": "1", "start_time": "2026-01-01"}, "start_time: must be 0"),
        ("update_user", {"pin": "1", "kind": "x"}, "kind: 'x' does not match"),
        ("set_option", {"key": "A", "value": "1,B=2"}, "value: ',' is not allowed"),
        ("set_option", {"key": "A=B", "value": "1"}, "key: must be an option name"),
        ("set_options", {"options": {}}, "options: must be a non-empty object"),
        ("get_options", {"names": []}, "names: must be a non-empty list"),
        ("get_options", {"names": "a,,b"}, "names: must be option names"),
        ("set_time", {"time": "1999-12-31 23:59:59"}, "time: must not be before 2000"),
        ("update_fingerprint", {"pin": 1, "fid": 1, "template": B64, "valid": 2}, "valid:"),
        ("update_fingerprint", {"pin": 1, "fid": 1, "template": "***"}, "template: must be base64"),
        ("update_userpic", {"pin": 1}, "content: give either content or url"),
        ("update_biophoto", {"pin": 1, "type": 9, "content": B64, "url": "u"}, "content: give"),
        ("update_user_authorize", {"pin": 1, "doors": 0}, "doors: must be an integer from 1"),
        ("delete_biodata", {"pin": 1, "no": 1}, "no: needs type"),
        ("query_biodata", {"type": 1, "no": 1}, "no: needs pin"),
        ("query_fingerprints", {"fid": 1}, "fid: needs pin"),
        ("query_attlog", {"start": "2026-01-01 00:00:00"}, "start: give both"),
        (
            "query_attlog",
            {"start": "2026-01-02 00:00:00", "end": "2026-01-01 00:00:00"},
            "end: must not be before start",
        ),
        (
            "query_attlog",
            {"start": "2026-01-01 00:00:00", "end": "2026-01-02 00:00:00", "new_only": 1},
            "new_only: cannot be combined",
        ),
        ("query_data", {"table": "a b"}, "table: must be a table name"),
        ("query_data", {"table": "t", "conditions": {"A": "1,2"}}, "conditions: values"),
        ("query_data", {"table": "t", "conditions": {"A": 1}, "new_only": 1}, "new_only:"),
        ("count_data", {"table": "user\tx"}, "table: TAB is not allowed"),
        ("upgrade", {"url": "a,b", "checksum": "x", "size": 1}, "url: must not contain ','"),
        ("upgrade", {"url": "a", "checksum": "x", "size": 1, "method": 4}, "method:"),
        ("raw", {"command": "REBOOT\nX"}, "command: LF is not allowed"),
    ],
)
def test_invalid_3x_commands_are_refused_naming_the_parameter(
    kind: str, params: Dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidCommand) as err:
        build3(kind, params)
    assert str(err.value).startswith(reason)


def test_raw_upgrade_text_is_in_the_upgrade_family() -> None:
    assert build3("raw", {"command": "UPGRADE checksum=a,url=b,size=1"}).family == "upgrade"


def test_commands_from_stored_3x_records() -> None:
    [user] = parse_tabledata("user", vector("031").body)[:1]
    assert isinstance(user, UserInfo)
    assert push3.user_update3(user).command == (
        "DATA UPDATE user CardNo=\tPin=1\tPassword=\tGroup=1\tStartTime=0\tEndTime=0"
        "\tName=Biseshar Borman\tPrivilege=14"
    )
    [photo] = parse_tabledata("biophoto", vector("033").body)
    assert isinstance(photo, BioPhoto)
    built = push3.biophoto_update3(photo)
    assert built.kind == "update_biophoto"
    assert built.command.startswith("DATA UPDATE biophoto PIN=1\tType=9\tSize=50204\tContent=/9j/")
    assert built.command.endswith("\tFormat=0")


def test_commands_from_stored_2x_records() -> None:
    [user] = parse_table("OPERLOG", b"USER PIN=7\tName=Ann\tPri=0\tPasswd=\tCard=\tGrp=1\tTZ=1")
    assert isinstance(user, UserInfo)
    assert push3.user_update3(user).command == (
        "DATA UPDATE user CardNo=\tPin=7\tPassword=\tGroup=1\tName=Ann\tPrivilege=0"
    )
    bio = BioTemplate("7", "0", "0", "1", "0", "9", "40", "1", "0", B64, True)
    assert push3.biodata_update3(bio).command == (
        "DATA UPDATE biodata pin=7\tno=0\tindex=0\tvalid=1\tduress=0\ttype=9\tmajorver=40"
        f"\tminorver=1\tformat=0\ttmp={B64}"
    )
    finger = FingerTemplate("7", "6", "4", "3", B64, True)
    assert push3.finger_update3(finger).command == (
        f"DATA UPDATE templatev10 Pin=7\tFingerID=6\tValid=3\tTemplate={B64}"
    )
    pic = UserPhoto("7", "7.jpg", "4", B64, True)
    assert push3.userpic_update3(pic).command == (
        f"DATA UPDATE userpic pin=7\tsize=4\tformat=0\tcontent={B64}"
    )
    with pytest.raises(InvalidCommand, match="truncated upload"):
        push3.userpic_update3(UserPhoto("7", "7.jpg", "9", B64, False))


def test_deleting_a_user_removes_privileges_and_templates_first() -> None:
    assert [b.command for b in push3.user_delete3("1001")] == [
        "DATA DELETE userauthorize Pin=1001",
        "DATA DELETE biodata pin=1001",
        "DATA DELETE biophoto PIN=1001",
        "DATA DELETE userpic pin=1001",
        "DATA DELETE user Pin=1001",
    ]


# -- results (§4.7) ---------------------------------------------------------------------


def _reply(body: bytes) -> Any:
    [reply] = parse_devicecmd(body)
    return reply


@pytest.mark.parametrize(
    "command, body, status, meaning, data",
    [
        (
            "DATA UPDATE user Pin=1",
            b"ID=1&Return=0&CMD=DATA UPDATE",
            "succeeded",
            "0: Successful",
            {},
        ),
        ("", b"ID=1&return=0&CMD=DATA", "succeeded", "0: Successful", {}),
        (
            "DATA QUERY tablename=user,fielddesc=*,filter=*",
            b"ID=2&Return=3&CMD=DATA QUERY",
            "succeeded",
            "3: Successful, 3 rows",
            {"rows": 3},
        ),
        (
            "DATA COUNT user",
            b"ID=3&Return=5&CMD=DATA COUNT",
            "succeeded",
            "5: Successful, 5 rows",
            {"rows": 5},
        ),
        (
            "",
            b"ID=4&Return=12&CMD=ACCOUNT&transaction&StartTime=1&EndTime=2&RecordSum=12",
            "succeeded",
            "12: Successful, 12 rows",
            {"transaction": "", "StartTime": "1", "EndTime": "2", "RecordSum": "12", "rows": 12},
        ),
        (
            "CONTROL DEVICE 01010105",
            b"ID=5&Return=-28&CMD=CONTROL DEVICE",
            "failed",
            "-28: Door already in normal-open mode",
            {},
        ),
        (
            "SET OPTIONS A=1",
            b"ID=6&Return=-108&CMD=SET OPTIONS",
            "failed",
            "-108: Invalid option",
            {},
        ),
        (
            "DATA QUERY tablename=x",
            b"ID=7&Return=-104&CMD=DATA QUERY",
            "failed",
            "-104: Table, field or option error",
            {},
        ),
        ("X", b"ID=8&Return=-9999&CMD=X", "failed", "-9999: Unknown return code", {}),
        (
            "UPGRADE x",
            b"ID=9&Return=-5000&CMD=UPGRADE&SN=SUB1",
            "pending",
            "-5000: Accepted by the master controller; the sub-controller's result follows",
            {"SN": "SUB1"},
        ),
        ("X", b"ID=10&Return=&CMD=X", "failed", "No return code", {}),
        ("X", b"ID=11&Return=ok&CMD=X", "failed", "ok: Unreadable return code", {}),
    ],
)
def test_3x_results(
    command: str, body: bytes, status: str, meaning: str, data: Dict[str, Any]
) -> None:
    outcome = interpret3(command, _reply(body))
    assert (outcome.status, outcome.meaning, outcome.data) == (status, meaning, data)


# -- remote verification (§6) ------------------------------------------------------------

AUTH_LINE = (
    b"time=2026-05-04 09:30:12\tpin=1001\tcardno=0\taddrtype=2\teventaddr=1\tevent=0"
    b"\tinoutstatus=0\tverifytype=15"
)


def test_remote_verification_request() -> None:
    request = parse_auth_request(AUTH_LINE + b"\r\n")
    assert request == AuthRequest(
        time="2026-05-04T09:30:12",
        pin="1001",
        card="0",
        addr_type="2",
        event_addr="1",
        event="0",
        inout="0",
        verify="15",
        line=AUTH_LINE,
        fields=(
            ("time", "2026-05-04 09:30:12"),
            ("pin", "1001"),
            ("cardno", "0"),
            ("addrtype", "2"),
            ("eventaddr", "1"),
            ("event", "0"),
            ("inoutstatus", "0"),
            ("verifytype", "15"),
        ),
    )
    assert request.door == 1


def test_remote_verification_replies_byte_for_byte() -> None:
    request = parse_auth_request(AUTH_LINE)
    assert auth_reply(request, True, tips="Welcome, Ana") == (
        b"AUTH=SUCCEED\r\n" + AUTH_LINE + b"\r\nCONTROL DEVICE 01010105\r\nTIPS=Welcome, Ana"
    )
    assert auth_reply(request, True, success_word="SUCCESS", open_seconds=3) == (
        b"AUTH=SUCCESS\r\n" + AUTH_LINE + b"\r\nCONTROL DEVICE 01010103"
    )
    assert auth_reply(request, False) == b"AUTH=FAILED\r\n" + AUTH_LINE
    assert auth_reply(request, True, timed_out=True) == b"AUTH=TIMEOUT\r\n" + AUTH_LINE
    assert auth_reply(request, True, door=2).endswith(b"CONTROL DEVICE 01020105")
    tips = auth_reply(request, False, tips="Acc\u00e8s refus\u00e9")
    assert tips.endswith("TIPS=Acc\u00e8s refus\u00e9".encode())


def test_remote_verification_from_a_reader_names_no_door() -> None:
    request = parse_auth_request(AUTH_LINE.replace(b"addrtype=2", b"addrtype=3"))
    assert request.door is None
    assert auth_reply(request, True) == b"AUTH=SUCCEED\r\n" + request.line


@pytest.mark.parametrize(
    "kwargs", [{"success_word": "OK"}, {"tips": "a\r\nb"}, {"door": 300}, {"open_seconds": -1}]
)
def test_remote_verification_reply_refuses_bad_values(kwargs: Dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        auth_reply(parse_auth_request(AUTH_LINE), True, **kwargs)


@pytest.mark.parametrize("body", [b"", b"\r\n", b"garbage", b"pin=1\tevent=0", b"time=x\tpin=1"])
def test_bad_remote_verification_requests(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_auth_request(body)


# -- arbitrary bytes: nothing but ProtocolError --------------------------------------------

TABLENAMES = st.sampled_from(
    [
        "user",
        "biodata",
        "biophoto",
        "userpic",
        "identitycard",
        "templatev10",
        "errorlog",
        "ATTPHOTO",
        "transaction",
        "APList",
        "other",
    ]
)
KEYS = st.sampled_from(
    [
        b"time",
        b"pin",
        b"event",
        b"eventaddr",
        b"time_second",
        b"eventtype",
        b"photo",
        b"tmp",
        b"content",
        b"size",
        b"fingerid",
        b"user pin",
        b"transaction time_second",
        b"x",
    ]
)
NEAR_MISS = st.lists(
    st.one_of(
        st.binary(max_size=40), st.builds(lambda k, v: k + b"=" + v, KEYS, st.binary(max_size=30))
    ),
    max_size=8,
).map(lambda parts: b"\t".join(parts))
BODIES = st.one_of(
    st.binary(max_size=2000), NEAR_MISS, st.lists(NEAR_MISS, max_size=4).map(b"\r\n".join)
)


def _only_protocol_errors(parse: Callable[[], object]) -> None:
    try:
        parse()
    except ProtocolError:
        pass


@given(body=BODIES)
def test_rtlog_rtstate_registry_auth_raise_nothing_but_protocol_error(body: bytes) -> None:
    _only_protocol_errors(lambda: parse_rtlog(body))
    _only_protocol_errors(lambda: parse_rtlog(body, "gb18030"))
    _only_protocol_errors(lambda: parse_rtstate(body))
    _only_protocol_errors(lambda: parse_registry(body))
    _only_protocol_errors(lambda: parse_auth_request(body))
    parse_cookie(body)  # never raises


@given(table=TABLENAMES, body=BODIES)
def test_tabledata_and_querydata_raise_nothing_but_protocol_error(table: str, body: bytes) -> None:
    _only_protocol_errors(lambda: parse_tabledata(table, body))
    _only_protocol_errors(lambda: parse_attphotos(body))
    for kind in ("count", "tabledata", "options", "vmtable", "x"):
        params = {"type": kind, "tablename": table, "count": "1", "packcnt": "2", "packidx": "x"}
        _only_protocol_errors(lambda params=params: parse_querydata(params, body))  # type: ignore[misc]


@given(token=st.text(max_size=40), session=st.text(max_size=40), stamp=st.text(max_size=20))
def test_token_check_never_raises_and_accepts_what_it_computes(
    token: str, session: str, stamp: str
) -> None:
    token_valid(token, RC, SN, session, stamp)
    if session:
        good = hashlib.md5((RC + SN + session).encode()).hexdigest()
        assert token_valid(good.upper(), RC, SN, session, stamp)


def test_attphoto_row_separated_by_spaces_as_the_notes_write_it() -> None:
    body = b"pin=20260504092107-1001.jpg sn=QZX7250100042 size=3 photo=QUJD\n"
    [(meta, image)] = parse_attphotos(body)  # type: ignore[misc]
    assert (meta.name, meta.pin, meta.size, image) == (
        "20260504092107-1001.jpg",
        "1001",
        "3",
        b"ABC",
    )
