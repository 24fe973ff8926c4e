"""Layer 1: what pushd says to devices, byte for byte."""

from __future__ import annotations

import pytest

from pushd.config import default_options, handshake_options
from pushd.protocol.records import FingerTemplate, UserInfo
from pushd.protocol.replies import (
    format_ok,
    format_options,
    format_remote_att,
    format_timezone,
    hybrid_support,
    negotiate_version,
)


def test_ok_forms() -> None:
    assert format_ok() == b"OK" and format_ok(9) == b"OK: 9"


@pytest.mark.parametrize(
    "device, agreed",
    [
        ("", "2.2.14"),
        ("2.2.14", "2.2.14"),
        ("2.4.1", "2.4.1"),
        ("3.1.2", "2.4.1"),
        ("2.3.0", "2.3.0"),
        ("junk", "2.2.14"),
    ],
)
def test_protocol_version_is_the_lower_of_both(device: str, agreed: str) -> None:
    assert negotiate_version(device) == agreed


@pytest.mark.parametrize(
    "minutes, value",
    [(480, "8"), (-300, "-5"), (330, "330"), (345, "345"), (-210, "-210"), (0, "0")],
)
def test_timezone_whole_half_and_quarter_hours(minutes: int, value: str) -> None:
    assert format_timezone(minutes) == value


def test_hybrid_identification_is_the_and_of_both_lists() -> None:
    device, server = "0:1:0:0:0:0:0:0:1", "0:0:0:0:0:0:0:0:1"
    assert hybrid_support(device, server) == "0:0:0:0:0:0:0:0:1"
    assert hybrid_support("0:1:0:0:0:0:0:0:1:1", "0:1:1:1:1:1:1:1:1") == "0:1:0:0:0:0:0:0:1:0"
    assert hybrid_support("", "1:1") == "0:0"


def test_options_block_with_stamps_overrides_and_negotiated_version() -> None:
    options = handshake_options(default_options(330), {"ATTLOG": "9999"}, {"Delay": "5"}, "2.2.14")
    body = format_options("0316144680030", options).decode()
    lines = body.split("\n")
    assert lines[0] == "GET OPTION FROM: 0316144680030"
    values = dict(line.split("=", 1) for line in lines[1:])
    assert values["ATTLOGStamp"] == "9999" and values["OPERLOGStamp"] == "None"
    assert values["Delay"] == "5" and values["TimeZone"] == "330"
    assert values["PushProtVer"] == "2.2.14" and values["ServerVer"] == "2.4.1"
    assert values["TransFlag"].startswith("TransData AttLog\tOpLog\tAttPhoto")
    for key in (
        "BIODATAStamp",
        "IDCARDStamp",
        "ERRORLOGStamp",
        "ErrorDelay",
        "TransTimes",
        "TransInterval",
        "Realtime",
        "Encrypt",
        "PushOptionsFlag",
        "PushOptions",
        "ATTPHOTOBase64",
        "MultiBioDataSupport",
        "MultiBioPhotoSupport",
    ):
        assert key in values
    assert not body.endswith("\n")


def test_remote_attendance_lines() -> None:
    user = UserInfo("36234", "Zhang", "0", "", "133440", "1", "0001000000000000")
    fp = FingerTemplate("36234", "0", "8", "1", "AAAAAAAA", True)
    assert format_remote_att(user, [fp]) == (
        b"DATA UPDATE USERINFO PIN=36234\tName=Zhang\tPasswd=\tCard=133440\tGrp=1\t"
        b"TZ=0001000000000000\tPri=0\n"
        b"DATA UPDATE FINGERTMP PIN=36234\tFID=0\tSize=8\tValid=1\tTMP=AAAAAAAA"
    )
    assert format_remote_att(None, []) == b"OK"
    assert format_remote_att(UserInfo("1", "张三"), [], "gb18030").endswith(
        "张三".encode("gb18030") + b"\tPasswd=\tCard=\tGrp=\tTZ=\tPri="
    )
