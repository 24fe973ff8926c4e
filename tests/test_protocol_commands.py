"""Layer 1: server commands (spec 12), their framing and their replies (spec 13, Appendix 1)."""

from __future__ import annotations

import base64
from typing import Any, Dict, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushd.errors import ProtocolError
from pushd.protocol.cdata import parse_table
from pushd.protocol.commands import (
    BUILDERS,
    FAMILIES,
    Built,
    InvalidCommand,
    Outcome,
    biodata_update,
    biophoto_update,
    build,
    command_id_ok,
    enroll_mf,
    face_update,
    finger_update,
    format_commands,
    interpret,
    update_fingerprint,
    update_user,
    upgrade,
    user_update,
    userpic_update,
    validate_raw,
    vein_update,
)
from pushd.protocol.devicecmd import parse_devicecmd
from pushd.protocol.records import (
    BioPhoto,
    BioTemplate,
    FaceTemplate,
    FingerTemplate,
    UserInfo,
    UserPhoto,
    VeinTemplate,
)
from tests.vectors import vector

# The base64 template of the spec's PutFile pack example (12.5.2): SIZE=28.
TMP = "c2FmZHNhd3Jyd3JlcmVyZXJlcnc="
SPEC_START, SPEC_END = "2015-07-29 00:00:00", "2015-07-29 23:59:59"

# Every kind with parameters taken from the spec (its examples where it has
# them, its format lines filled in otherwise) and the exact command text, TABs
# restored where the spec prints ${HT}.
EXAMPLES: List[Any] = [
    ("reboot", {}, "REBOOT"),
    ("info", {}, "INFO"),
    ("check", {}, "CHECK"),
    ("log", {}, "LOG"),
    ("unlock", {}, "AC_UNLOCK"),
    ("unalarm", {}, "AC_UNALARM"),
    ("reload_options", {}, "RELOAD OPTIONS"),
    ("set_option", {"key": "TimeZone", "value": 3}, "SET OPTION TimeZone=3"),
    ("clear_log", {}, "CLEAR LOG"),
    ("clear_photo", {}, "CLEAR PHOTO"),
    ("clear_data", {}, "CLEAR DATA"),
    ("clear_biodata", {}, "CLEAR BIODATA"),
    (
        "verify_sum",
        {"start": SPEC_START, "end": SPEC_END},
        f"VERIFY SUM ATTLOG StartTime={SPEC_START}\tEndTime={SPEC_END}",
    ),
    (
        "query_attlog",
        {"start": "2015-07-29T00:00:00", "end": SPEC_END},
        f"DATA QUERY ATTLOG StartTime={SPEC_START}\tEndTime={SPEC_END}",
    ),
    (
        "query_attphoto",
        {"start": SPEC_START, "end": SPEC_END},
        f"DATA QUERY ATTPHOTO StartTime={SPEC_START}\tEndTime={SPEC_END}",
    ),
    ("query_users", {"pin": 1}, "DATA QUERY USERINFO PIN=1"),
    ("query_fingerprints", {"pin": 1, "fid": 0}, "DATA QUERY FINGERTMP PIN=1\tFingerID=0"),
    ("query_biodata", {"type": 9, "pin": 1, "no": 0}, "DATA QUERY BIODATA Type=9\tPIN=1\tNo=0"),
    (
        "update_user",
        {"pin": 1, "name": "1", "privilege": 0, "password": "1", "group": 1},
        "DATA UPDATE USERINFO PIN=1\tName=1\tPri=0\tPasswd=1\tGrp=1",
    ),
    (
        "update_idcard",
        {
            "pin": 2,
            "sn_num": "0000460088000000",
            "id_num": "000000199112180000",
            "dn_num": "",
            "name": "Zhang San",
            "gender": 1,
            "nation": 1,
            "birthday": "19911218",
            "valid_info": "2017091520270915",
            "address": " Province xx City xx",
            "additional_info": "",
            "issuer": " County xxx public security bureau",
            "photo": "V0xmAH4AMgAA",
            "fp_template1": "QwESAAAA",
            "fp_template2": "QwESAAAA",
            "reserve": "",
            "notice": "",
        },
        "DATA UPDATE IDCARD PIN=2\tSNNum=0000460088000000\tIDNum=000000199112180000\tDNNum="
        "\tName=Zhang San\tGender=1\tNation=1\tBirthday=19911218\tValidInfo=2017091520270915"
        "\tAddress= Province xx City xx\tAdditionalInfo="
        "\tIssuer= County xxx public security bureau\tPhoto=V0xmAH4AMgAA"
        "\tFPTemplate1=QwESAAAA\tFPTemplate2=QwESAAAA\tReserve=\tNotice=",
    ),
    (
        "update_fingerprint",
        {"pin": 1, "fid": 1, "template": TMP},
        f"DATA UPDATE FINGERTMP PIN=1\tFID=1\tSize=28\tValid=1\tTMP={TMP}",
    ),
    (
        "update_face",
        {"pin": 1, "fid": 11, "template": TMP},
        f"DATA UPDATE FACE PIN=1\tFID=11\tValid=1\tSize=28\tTMP={TMP}",
    ),
    (
        "update_finger_vein",
        {"pin": 306, "fid": 2, "index": 0, "template": TMP},
        f"DATA UPDATE FVEIN Pin=306\tFID=2\tIndex=0\tValid=1\tSize=28\tTmp={TMP}",
    ),
    (
        "update_biodata",
        {"pin": 306, "type": 8, "template": TMP, "major_ver": 1, "minor_ver": 0, "index": 2},
        "DATA UPDATE BIODATA Pin=306\tNo=0\tIndex=2\tValid=1\tDuress=0\tType=8\tMajorVer=1"
        f"\tMinorVer=0\tFormat=0\tTmp={TMP}",
    ),
    (
        "update_userpic",
        {"pin": 123, "content": "AAAAAAAAAAAA"},
        "DATA UPDATE USERPIC PIN=123\tSize=12\tContent=AAAAAAAAAAAA",
    ),
    (
        "update_biophoto",
        {"pin": 123, "type": 9, "content": "AAAAAAAAAAAA"},
        "DATA UPDATE BIOPHOTO PIN=123\tType=9\tSize=12\tContent=AAAAAAAAAAAA\tFormat=0",
    ),
    (
        "update_sms",
        {"uid": 1, "message": "Welcome", "tag": 253, "minutes": 60, "start": SPEC_START},
        f"DATA UPDATE SMS MSG=Welcome\tTAG=253\tUID=1\tMIN=60\tStartTime={SPEC_START}",
    ),
    ("update_user_sms", {"pin": 1, "uid": 1}, "DATA UPDATE USER_SMS PIN=1\tUID=1"),
    (
        "update_adpic",
        {"index": 1, "extension": "jpg", "content": "AAAA"},
        "DATA UPDATE ADPIC Index=1\tSize=4\tExtension=jpg\tContent=AAAA",
    ),
    (
        "update_workcode",
        {"pin": 1, "code": 8, "name": "Night shift"},
        "DATA UPDATE WORKCODE PIN=1\tCODE=8\tNAME=Night shift",
    ),
    (
        "update_shortcut_key",
        {
            "key_id": 1,
            "key_fun": 1,
            "status_code": 0,
            "show_name": "Check-In",
            "auto_state": 1,
            "auto_time": "08:00;08:00;08:00;08:00;08:00;08:00;08:00",
            "sun": 0,
            "mon": 1,
            "tue": 1,
            "wed": 1,
            "thu": 1,
            "fri": 1,
            "sat": 0,
        },
        "DATA UPDATE ShortcutKey KeyID=1\tKeyFun=1\tStatusCode=0\tShowName=Check-In"
        "\tAutoState=1\tAutoTime=08:00;08:00;08:00;08:00;08:00;08:00;08:00"
        "\tSun=0\tMon=1\tTue=1\tWed=1\tThu=1\tFri=1\tSat=0",
    ),
    (
        "update_access_group",
        {"group_id": 1, "verify": 0, "valid_holiday": 1, "tz": "1; 1; 0; 0"},
        "DATA UPDATE AccGroup ID=1\tVerify=0\tValidHoliday=1\tTZ=1;1;0;0",
    ),
    (
        "update_access_timezone",
        {"uid": 2, "mon_start": "0800", "mon_end": "1159", "sat_start": "08:00", "sun_end": 2359},
        "DATA UPDATE AccTimeZone UID=2\tSunStart=0\tSunEnd=2359\tMonStart=800\tMonEnd=1159"
        "\tTuesStart=0\tTuesEnd=0\tWedStart=0\tWedEnd=0\tThursStart=0\tThursEnd=0"
        "\tFriStart=0\tFriEnd=0\tSatStart=800\tSatEnd=0",
    ),
    (
        "update_access_holiday",
        {"uid": 1, "name": "Holiday", "start": "1123", "end": "11-25", "timezone": 1},
        "DATA UPDATE AccHoliday UID=1\tHolidayName=Holiday\tStartDate=1123\tEndDate=1125"
        "\tTimeZone=1",
    ),
    (
        "update_access_combination",
        {"uid": 1, "group1": 1, "group2": 2},
        "DATA UPDATE AccUnLockComb UID=1\tGroup1=1\tGroup2=2\tGroup3=0\tGroup4=0\tGroup5=0",
    ),
    (
        "update_blacklist",
        {"id_num": "11010119900307001X"},
        "DATA UPDATE Blacklist IDNum=11010119900307001X",
    ),
    ("delete_user", {"pin": 1}, "DATA DELETE USERINFO PIN=1"),
    ("delete_fingerprint", {"pin": 1, "fid": 6}, "DATA DELETE FINGERTMP PIN=1\tFID=6"),
    ("delete_face", {"pin": 1}, "DATA DELETE FACE PIN=1"),
    ("delete_finger_vein", {"pin": 1, "fid": 2}, "DATA DELETE FVEIN Pin=1\tFID=2"),
    ("delete_biodata", {"pin": 1, "type": 8, "no": 0}, "DATA DELETE BIODATA Pin=1\tType=8\tNo=0"),
    ("delete_userpic", {"pin": 1}, "DATA DELETE USERPIC PIN=1"),
    ("delete_biophoto", {"pin": 1}, "DATA DELETE BIOPHOTO PIN=1"),
    ("delete_sms", {"uid": 3}, "DATA DELETE SMS UID=3"),
    ("delete_workcode", {"code": 8}, "DATA DELETE WORKCODE CODE=8"),
    ("delete_adpic", {"index": 1}, "DATA DELETE ADPIC Index=1"),
    ("get_file", {"path": "attlog.dat"}, "GetFile attlog.dat"),
    (
        "put_file",
        {"url": "file/fw/X938/main.tgz", "path": "main.tgz"},
        "PutFile file/fw/X938/main.tgz\tmain.tgz",
    ),
    (
        "enroll_fp",
        {"pin": 1, "fid": 6, "overwrite": 1},
        "ENROLL_FP PIN=1\tFID=6\tRETRY=3\tOVERWRITE=1",
    ),
    ("enroll_mf", {"pin": 408, "retry": 3}, "ENROLL_MF PIN=408\tRETRY=3"),
    (
        "enroll_bio",
        {"type": 9, "pin": 1, "retry": 3, "overwrite": 0},
        "ENROLL_BIO TYPE=9\tPIN=1\tCardNo=\tRETRY=3\tOVERWRITE=0",
    ),
    ("shell", {"command": "ls -l /mnt/mtdblock"}, "SHELL ls -l /mnt/mtdblock"),
    (
        "upgrade",
        {
            "url": "http://localhost:8088/fireware/F20/admin/emfw.cfg",
            "checksum": "a5bf4dcd6020f408589224274aab132d",
            "size": 2312,
        },
        "UPGRADE checksum=a5bf4dcd6020f408589224274aab132d,"
        "url=http://localhost:8088/fireware/F20/admin/emfw.cfg,size=2312",
    ),
    ("raw", {"command": "DATA DELETE USERINFO PIN=7"}, "DATA DELETE USERINFO PIN=7"),
]

FAMILY_OF = {"get_file": "files", "put_file": "files", "shell": "shell", "upgrade": "upgrade"}


def _json_strings(params: Dict[str, Any]) -> Dict[str, Any]:
    """The same parameters with every number given as a string, as some JSON clients send."""
    return {k: str(v) if isinstance(v, int) else v for k, v in params.items()}


# -- builders ----------------------------------------------------------------


def test_every_kind_has_a_spec_example() -> None:
    assert sorted(kind for kind, _, _ in EXAMPLES) == sorted(BUILDERS)


@pytest.mark.parametrize(
    "kind, params, command", EXAMPLES, ids=[example[0] for example in EXAMPLES]
)
def test_builder_writes_the_spec_command(kind: str, params: Dict[str, Any], command: str) -> None:
    built = BUILDERS[kind](**params)
    expected_kind = "raw" if kind == "raw" else kind
    assert built == Built(command, expected_kind, FAMILY_OF.get(kind, "standard"))


@pytest.mark.parametrize(
    "kind, params, command", EXAMPLES, ids=[example[0] for example in EXAMPLES]
)
def test_build_accepts_json_numbers_and_numeric_strings(
    kind: str, params: Dict[str, Any], command: str
) -> None:
    assert build(kind, params).command == command
    assert build(kind, _json_strings(params)).command == command
    assert build(kind, {"kind": kind, **params}).command == command


@pytest.mark.parametrize(
    "kind, params, command", EXAMPLES, ids=[example[0] for example in EXAMPLES]
)
def test_raw_text_of_a_built_command_falls_in_the_same_family(
    kind: str, params: Dict[str, Any], command: str
) -> None:
    built = build(kind, params)
    assert built.family in FAMILIES
    assert validate_raw(built.command) == Built(built.command, "raw", built.family)


def test_spec_frames_with_their_ids() -> None:
    assert format_commands([("123", enroll_mf(408, 3).command)]) == (
        b"C:123:ENROLL_MF PIN=408\tRETRY=3"
    )
    method1 = upgrade(
        "http://localhost:8088/fireware/F20/admin/emfw.cfg",
        "a5bf4dcd6020f408589224274aab132d",
        2312,
    )
    method2 = upgrade(
        "http://192.168.0.13:89/data/emfw.cfg", "oqoier9883kjankdefi894eu", 6558, method=2
    )
    assert format_commands([("384", method1.command), ("123", method2.command)]) == (
        b"C:384:UPGRADE checksum=a5bf4dcd6020f408589224274aab132d,"
        b"url=http://localhost:8088/fireware/F20/admin/emfw.cfg,size=2312\n"
        b"C:123:UPGRADE type=1,checksum=oqoier9883kjankdefi894eu,size=6558,"
        b"url=http://192.168.0.13:89/data/emfw.cfg"
    )
    assert format_commands([("1626", build("info", {}).command)]) == b"C:1626:INFO"
    assert format_commands([("ccf93e17c31a4beb", "SET OPTION TimeZone=3")]) == (
        b"C:ccf93e17c31a4beb:SET OPTION TimeZone=3"
    )


def test_pack_example_lines_carry_the_same_fields() -> None:
    # 12.5.2's pack example, TABs restored; keys compared case-insensitively
    # (the example writes SIZE/VALID where the command format writes Size/Valid).
    def fields(line: str) -> Dict[str, str]:
        _, _, record = line.partition(" PIN=")
        pairs = [p.partition("=") for p in ("PIN=" + record).split("\t")]
        return {key.upper(): value for key, _, value in pairs}

    user = update_user(1, name=1, privilege=0, password=1, group=1).command
    assert user == "DATA UPDATE USERINFO PIN=1\tName=1\tPri=0\tPasswd=1\tGrp=1"
    face = build("update_face", {"pin": 1, "fid": 3, "template": TMP}).command
    spec_face = f"DATA UPDATE FACE PIN=1\tFID=3\tSIZE=28\tVALID=1\tTMP={TMP}"
    assert fields(face) == fields(spec_face)
    finger = update_fingerprint(1, 9, TMP).command
    spec_finger = f"DATA UPDATE FINGERTMP PIN=1\tFID=9\tSIZE=28\tVALID=1\tTMP={TMP}"
    assert fields(finger) == fields(spec_finger)
    # ...but the example's FINGERTMP FID=11 is outside the spec's own 0-9.
    with pytest.raises(InvalidCommand, match="fid"):
        update_fingerprint(1, 11, TMP)


@pytest.mark.parametrize(
    "kind, params, command",
    [
        ("query_users", {}, "DATA QUERY USERINFO"),
        ("query_fingerprints", {"pin": 1}, "DATA QUERY FINGERTMP PIN=1"),
        ("query_biodata", {"type": 9}, "DATA QUERY BIODATA Type=9"),
        ("query_biodata", {"type": 9, "pin": 1}, "DATA QUERY BIODATA Type=9\tPIN=1"),
        ("delete_fingerprint", {"pin": 1}, "DATA DELETE FINGERTMP PIN=1"),
        ("delete_finger_vein", {"pin": 1}, "DATA DELETE FVEIN Pin=1"),
        ("delete_biodata", {"pin": 1}, "DATA DELETE BIODATA Pin=1"),
        ("delete_biodata", {"pin": 1, "type": 8}, "DATA DELETE BIODATA Pin=1\tType=8"),
        ("put_file", {"url": "file/fw/X938/main.tgz"}, "PutFile file/fw/X938/main.tgz"),
        (
            "put_file",
            {"url": "file/fw/X938/main.tgz", "path": "/mnt/"},
            "PutFile file/fw/X938/main.tgz\t/mnt/",
        ),
        (
            "put_file",
            {"url": "file/fw/X938/ssruser.dat", "path": "/mnt/mtdblock/ssruser.dat"},
            "PutFile file/fw/X938/ssruser.dat\t/mnt/mtdblock/ssruser.dat",
        ),
        (
            "put_file",
            {
                "url": "file/users.tgz",
                "path": "/mnt/mtdblock/",
                "action": "SyncData",
                "table": "USERINFO",
                "record_count": 2,
            },
            "PutFile file/users.tgz\t/mnt/mtdblock/\tAction=SyncData\tTableName=USERINFO"
            "\tRecordCount=2",
        ),
        (
            "put_file",
            {"url": "http://host/users.tgz", "path": "/mnt/", "action": "AppendData"},
            "PutFile http://host/users.tgz\t/mnt/\tAction=AppendData",
        ),
        (
            "update_biophoto",
            {"pin": 123, "type": 9, "url": "photos/123.jpg", "post_back_tmp": True},
            "DATA UPDATE BIOPHOTO PIN=123\tType=9\tSize=0\tContent=\tFormat=1"
            "\tUrl=photos/123.jpg\tPostBackTmpFlag=1",
        ),
        (
            "update_user",
            {
                "pin": "36234",
                "name": "Ann",
                "privilege": 14,
                "password": "123",
                "card": "[15CD5B07]",
                "group": 1,
                "tz": "0001000200000000",
                "verify": -1,
                "vice_card": "123456789",
            },
            "DATA UPDATE USERINFO PIN=36234\tName=Ann\tPri=14\tPasswd=123\tCard=[15CD5B07]"
            "\tGrp=1\tTZ=0001000200000000\tVerify=-1\tViceCard=123456789",
        ),
        ("enroll_fp", {"pin": 1, "fid": 6, "overwrite": False}, None),
        ("raw", {"command": " \tSHELL ls\t "}, "SHELL ls"),
    ],
)
def test_optional_fields_and_other_forms(kind: str, params: Dict[str, Any], command: Any) -> None:
    built = build(kind, params)
    if command is None:
        assert built.command.endswith("OVERWRITE=0")
    else:
        assert built.command == command


def test_upgrade_method_two_and_size_is_the_callers() -> None:
    built = build(
        "upgrade",
        {"url": "http://h/emfw.cfg", "checksum": "abc", "size": "6558", "method": "2"},
    )
    assert built == Built(
        "UPGRADE type=1,checksum=abc,size=6558,url=http://h/emfw.cfg", "upgrade", "upgrade"
    )


def test_size_is_computed_never_taken_from_the_caller() -> None:
    with pytest.raises(InvalidCommand, match=r"unknown parameter.*size"):
        build("update_fingerprint", {"pin": 1, "fid": 0, "template": TMP, "size": 9})
    photo = "/9j/" + "A" * 96
    assert f"\tSize={len(photo)}\t" in build("update_userpic", {"pin": 1, "content": photo}).command


# -- validation --------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, params, reason",
    [
        ("update_user", {"pin": "1", "name": "a\tPri=14"}, "name: TAB"),
        ("update_user", {"pin": "1", "name": "a\nC:2:CLEAR DATA"}, "name: LF"),
        ("update_user", {"pin": "1", "name": "a\rb"}, "name: CR"),
        ("update_user", {"pin": "1", "name": "a\x00b"}, "name: NUL"),
        ("update_user", {"pin": "1", "password": "\x1b[1m"}, "password: U\\+001B"),
        ("set_option", {"key": "Delay", "value": "10\nC:9:REBOOT"}, "value: LF"),
        ("set_option", {"key": "Delay=1\tX", "value": "1"}, "key:"),
        ("shell", {"command": "ls\tx"}, "command: TAB"),
        ("shell", {"command": "   "}, "command: must not be blank"),
        ("get_file", {"path": "a\nb"}, "path: LF"),
        ("get_file", {"path": "my file"}, "path: must not contain spaces"),
        ("update_workcode", {"pin": 1, "code": 2, "name": "x\ty"}, "name: TAB"),
        ("update_user", {"pin": ""}, "pin: must be 1-24"),
        ("update_user", {"pin": "100 Name=Jorge"}, "pin: must be 1-24"),
        ("update_user", {"pin": "x" * 25}, "pin: must be 1-24"),
        ("update_user", {"pin": "é"}, "pin: must be 1-24"),
        ("delete_user", {"pin": "1\t2"}, "pin:"),
        ("delete_user", {"pin": True}, "pin: must be a string"),
        ("delete_user", {"pin": 1.5}, "pin: must be a string"),
        ("delete_user", {"pin": 10**30}, "pin: number out of range"),
        ("update_access_timezone", {"uid": 1, "mon_start": True}, "mon_start:"),
        ("update_user", {"pin": 1, "privilege": 16}, "privilege: must be an integer from 0 to 15"),
        ("update_user", {"pin": 1, "tz": "00010002000000001"}, "tz:"),
        ("update_user", {"pin": 1, "card": "12 34"}, "card:"),
        ("update_fingerprint", {"pin": 1, "fid": 10, "template": TMP}, "fid: .* 0 to 9"),
        ("update_fingerprint", {"pin": 1, "fid": -1, "template": TMP}, "fid:"),
        ("update_fingerprint", {"pin": 1, "fid": "one", "template": TMP}, "fid:"),
        ("update_fingerprint", {"pin": 1, "fid": True, "template": TMP}, "fid: .*boolean"),
        ("update_fingerprint", {"pin": 1, "fid": 1, "template": TMP, "valid": 2}, "valid:"),
        ("update_face", {"pin": 1, "fid": 12, "template": TMP}, "fid: .* 0 to 11"),
        ("update_finger_vein", {"pin": 1, "fid": 1, "index": 3, "template": TMP}, "index:"),
        ("enroll_fp", {"pin": 1, "fid": 10}, "fid:"),
        ("enroll_fp", {"pin": 1, "fid": 1, "overwrite": 2}, "overwrite:"),
        ("enroll_fp", {"pin": 1, "fid": 1, "retry": 0}, "retry:"),
        ("enroll_bio", {"type": 10, "pin": 1}, "type: .* 0 to 9"),
        ("query_biodata", {"type": -1}, "type:"),
        ("delete_biodata", {"pin": 1, "type": 10}, "type:"),
        ("delete_biodata", {"pin": 1, "no": 0}, "no: needs type"),
        ("query_biodata", {"type": 1, "no": 0}, "no: needs pin"),
        (
            "update_biodata",
            {"pin": 1, "type": 12, "template": TMP, "major_ver": 1},
            "type:",
        ),
        (
            "update_biodata",
            {"pin": 1, "type": 2, "template": TMP, "major_ver": 1, "index": 256},
            "index:",
        ),
        (
            "update_fingerprint",
            {"pin": 1, "fid": 1, "template": "not base64!"},
            "template: .*base64",
        ),
        ("update_fingerprint", {"pin": 1, "fid": 1, "template": "AAA"}, "template: .*base64"),
        ("update_fingerprint", {"pin": 1, "fid": 1, "template": ""}, "template: must not be empty"),
        ("update_userpic", {"pin": 1, "content": "ÄÄÄÄ"}, "content: .*base64"),
        ("update_idcard", {"pin": 0, "photo": "%%%%"}, "photo: .*base64"),
        ("update_biophoto", {"pin": 1, "type": 9}, "either content or url"),
        (
            "update_biophoto",
            {"pin": 1, "type": 9, "content": "AAAA", "url": "a.jpg"},
            "either content or url",
        ),
        ("query_attlog", {"start": "2015-02-30 00:00:00", "end": SPEC_END}, "start: .*not a valid"),
        ("query_attlog", {"start": "2015-07-29", "end": SPEC_END}, "start: must be a time"),
        (
            "query_attlog",
            {"start": SPEC_START, "end": "29/07/2015 23:59:59"},
            "end: must be a time",
        ),
        ("verify_sum", {"start": SPEC_END, "end": SPEC_START}, "end: must not be before start"),
        (
            "update_sms",
            {"uid": 1, "message": "x" * 321, "minutes": 1, "start": SPEC_START},
            "message: longer than 320",
        ),
        (
            "update_sms",
            {"uid": 1, "message": "x", "minutes": 1, "start": SPEC_START, "tag": 252},
            "tag:",
        ),
        ("update_access_timezone", {"uid": 1, "mon_start": "2400"}, "mon_start:"),
        ("update_access_timezone", {"uid": 1, "fri_end": "1260"}, "fri_end:"),
        (
            "update_access_holiday",
            {"uid": 1, "name": "x", "start": "1323", "end": "0101", "timezone": 1},
            "start:",
        ),
        ("update_access_group", {"group_id": 1, "tz": "1;1;0"}, "tz: must be four numbers"),
        ("update_shortcut_key", {"key_id": 9, "key_fun": 1}, "key_id:"),
        ("update_adpic", {"index": 1, "extension": ".jpg", "content": "AAAA"}, "extension:"),
        ("put_file", {"url": "a b.tgz"}, "url: must not contain spaces"),
        ("put_file", {"url": "a.tgz", "action": "SyncData"}, "path: needed with action"),
        ("put_file", {"url": "a.tgz", "path": "/mnt/", "action": "SyncData"}, "needs table"),
        (
            "put_file",
            {
                "url": "a.tgz",
                "path": "/mnt/",
                "action": "SyncData",
                "table": "ATTLOG",
                "record_count": 1,
            },
            "table: must be one of",
        ),
        (
            "put_file",
            {"url": "a.tgz", "path": "/mnt/", "action": "AppendData", "table": "USERINFO"},
            "AppendData takes no table",
        ),
        ("put_file", {"url": "a.tgz", "path": "/mnt/", "action": "Delete"}, "action: must be"),
        ("put_file", {"url": "a.tgz", "table": "USERINFO"}, "need action=SyncData"),
        (
            "upgrade",
            {"url": "http://h/a,b", "checksum": "ab", "size": 1},
            "url: must not contain ','",
        ),
        ("upgrade", {"url": "http://h/a", "checksum": "a b", "size": 1}, "checksum:"),
        ("upgrade", {"url": "http://h/a", "checksum": "ab", "size": -1}, "size:"),
        ("upgrade", {"url": "http://h/a", "checksum": "ab", "size": 1, "method": 3}, "method:"),
        ("raw", {"command": "INFO\nC:2:REBOOT"}, "command: LF"),
        ("raw", {"command": " \t "}, "command: must not be empty"),
    ],
)
def test_invalid_parameters_are_refused_naming_the_parameter(
    kind: str, params: Dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidCommand, match=reason) as caught:
        build(kind, params)
    assert caught.value.status == 400 and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "kind, params, reason",
    [
        ("reboot_now", {}, "kind: unknown command kind 'reboot_now'"),
        ("update_user", {}, "update_user: missing parameter.* pin"),
        ("update_user", {"pin": None}, "update_user: missing parameter.* pin"),
        ("query_attlog", {"start": SPEC_START}, "missing parameter.* end"),
        ("reboot", {"delay": 5, "force": True}, "reboot: unknown parameter.* delay, force"),
        ("reboot", {"kind": "info"}, "kind: 'info' does not match 'reboot'"),
    ],
)
def test_unknown_kinds_missing_and_extra_parameters(
    kind: str, params: Dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidCommand, match=reason):
        build(kind, params)


def test_invalid_command_is_a_protocol_error() -> None:
    assert issubclass(InvalidCommand, ProtocolError)
    with pytest.raises(InvalidCommand, match="parameters must be an object"):
        build("reboot", ["x"])  # type: ignore[arg-type]


def test_limits_that_pass() -> None:
    assert build("delete_user", {"pin": "A" * 24}).command.endswith("A" * 24)
    assert build("delete_user", {"pin": "a_b-c.d"}).command == "DATA DELETE USERINFO PIN=a_b-c.d"
    assert "FID=9" in update_fingerprint(1, 9, TMP).command
    assert "Verify=-1" in update_user(1, verify=-1).command
    utf8_limit = "é" * 160  # 320 bytes in UTF-8
    params = {"uid": 1, "message": utf8_limit, "minutes": 1, "start": SPEC_START}
    assert f"MSG={utf8_limit}\t" in build("update_sms", params).command


# -- raw text and families ---------------------------------------------------


@pytest.mark.parametrize(
    "text, family",
    [
        ("SHELL ls", "shell"),
        ("shell ls", "shell"),
        ("Shell\tls", "shell"),
        ("SHELLX ls", "shell"),
        ("GetFile /etc/passwd", "files"),
        ("getfile x", "files"),
        ("PutFile a.tgz\t/mnt/", "files"),
        ("UPGRADE type=1,checksum=a,size=1,url=u", "upgrade"),
        ("DATA UPDATE USERINFO PIN=1\tName=SHELL", "standard"),
        ("CONTROL DEVICE 03000000", "standard"),
        ("INFO", "standard"),
    ],
)
def test_raw_text_is_classified_by_its_first_word(text: str, family: str) -> None:
    assert validate_raw(text) == Built(text, "raw", family)


@pytest.mark.parametrize("text", ["", "   ", "INFO\r", "INFO\n", "A\x00B", "\n"])
def test_raw_text_refuses_line_breaks_nul_and_emptiness(text: str) -> None:
    with pytest.raises(InvalidCommand, match="command:"):
        validate_raw(text)


def test_raw_text_keeps_its_inside_as_given() -> None:
    text = "DATA UPDATE USERINFO PIN=1\tName= two  spaces \tPri=0"
    assert validate_raw(f"  {text}\t").command == text


# -- formatting --------------------------------------------------------------


@pytest.mark.parametrize(
    "command_id, ok",
    [
        ("1", True),
        ("ccf93e17c31a4beb", True),
        ("info8487", True),
        ("", False),
        ("x" * 17, False),
        ("a:b", False),
        ("a b", False),
        ("é", False),
        (1, False),
    ],
)
def test_command_ids_are_one_to_sixteen_letters_or_digits(command_id: Any, ok: bool) -> None:
    assert command_id_ok(command_id) is ok


def test_commands_are_joined_by_lf_without_a_trailing_one() -> None:
    body = format_commands([("1", "INFO"), ("2", "DATA DELETE USERINFO PIN=1")])
    assert body == b"C:1:INFO\nC:2:DATA DELETE USERINFO PIN=1"
    assert format_commands([]) == b""


def test_chinese_devices_get_gb18030_and_unwritable_characters_are_replaced() -> None:
    command = update_user(1, name="张三").command
    assert format_commands([("7", command)], "gb18030") == (
        b"C:7:DATA UPDATE USERINFO PIN=1\tName=\xd5\xc5\xc8\xfd"
    )
    assert format_commands([("7", "SET OPTION Name=\udcff")]) == b"C:7:SET OPTION Name=?"


@pytest.mark.parametrize(
    "commands, reason",
    [
        ([("", "INFO")], "id:"),
        ([("a:b", "INFO")], "id:"),
        ([("1", "")], "command: empty"),
        ([("1", "INFO\nC:2:REBOOT")], "command: LF"),
        ([("1", "INFO\r")], "command: CR"),
    ],
)
def test_formatting_refuses_bad_ids_and_line_breaks(commands: Any, reason: str) -> None:
    with pytest.raises(InvalidCommand, match=reason):
        format_commands(commands)


def test_unknown_codec_is_an_invalid_command() -> None:
    with pytest.raises(InvalidCommand, match="encoding"):
        format_commands([("1", "INFO")], "no-such-codec")


def _device_split(body: bytes, codec: str) -> List[List[str]]:
    """What a terminal does: split on LF, then each line on its first two ':'."""
    return [line.decode(codec).split(":", 2) for line in body.split(b"\n")]


# Field text: anything but control characters (surrogates are not generated).
field_text = st.text(max_size=40).map(
    lambda s: "".join(ch for ch in s if ch >= " " and ch != "\x7f")
)
pins = st.from_regex(r"\A[A-Za-z0-9_.-]{1,24}\Z")
command_ids = st.from_regex(r"\A[A-Za-z0-9]{1,16}\Z")
codecs = st.sampled_from(["utf-8", "gb18030"])


@given(command_ids, pins, field_text, field_text, st.integers(0, 9), codecs)
def test_built_commands_reach_the_device_unchanged(
    command_id: str, pin: str, name: str, password: str, fid: int, codec: str
) -> None:
    user = update_user(pin, name=name, password=password)
    finger = build("update_fingerprint", {"pin": pin, "fid": str(fid), "template": TMP})
    body = format_commands([(command_id, user.command), ("2", finger.command)], codec)
    assert _device_split(body, codec) == [
        ["C", command_id, user.command],
        ["C", "2", finger.command],
    ]
    assert user.command.split("\t") == [
        f"DATA UPDATE USERINFO PIN={pin}",
        f"Name={name}",
        f"Passwd={password}",
    ]


@given(command_ids, st.text(min_size=1, max_size=60), codecs)
def test_raw_commands_reach_the_device_unchanged(command_id: str, text: str, codec: str) -> None:
    try:
        built = validate_raw(text)
    except InvalidCommand:
        assert not text.strip(" \t") or any(ch in text for ch in "\r\n\x00")
        return
    assert built.command == text.strip(" \t")
    [[_, got_id, got_command]] = _device_split(
        format_commands([(command_id, built.command)], codec), codec
    )
    assert (got_id, got_command) == (command_id, built.command)


@given(field_text, st.sampled_from(["\t", "\r", "\n", "\x00", "\x0b", "\x1f", "\x7f"]), field_text)
def test_control_characters_never_get_into_a_field(before: str, control: str, after: str) -> None:
    with pytest.raises(InvalidCommand, match="name:"):
        update_user(1, name=before + control + after)


json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=2),
)
param_names = st.sampled_from(
    [
        "pin",
        "fid",
        "template",
        "name",
        "start",
        "end",
        "type",
        "no",
        "url",
        "path",
        "action",
        "table",
        "record_count",
        "command",
        "key",
        "value",
        "size",
        "uid",
        "index",
        "kind",
        "x",
    ]
)


@given(st.sampled_from(sorted(BUILDERS)), st.dictionaries(param_names, json_values, max_size=6))
def test_build_raises_nothing_but_invalid_command(kind: str, params: Dict[str, Any]) -> None:
    try:
        built = build(kind, params)
    except InvalidCommand:
        return
    assert built.family in FAMILIES and built.command
    assert not any(ch in built.command for ch in "\r\n\x00")


# -- builders from stored records --------------------------------------------


def test_users_copy_from_the_spec_upload() -> None:
    first, second = parse_table("OPERLOG", vector("11.5-", "spec").body)
    assert isinstance(first, UserInfo) and isinstance(second, UserInfo)
    assert user_update(first) == Built(
        "DATA UPDATE USERINFO PIN=36234\tName=36234\tPri=0\tPasswd=\tCard=133440\tGrp=1"
        "\tTZ=0001000000000000",
        "update_user",
        "standard",
    )


def test_user_with_a_spaced_pin_is_not_copied() -> None:
    [user] = [r for r in parse_table("OPERLOG", vector("012").body) if isinstance(r, UserInfo)]
    assert " " in user.pin
    with pytest.raises(InvalidCommand, match="pin:"):
        user_update(user)


def test_user_copy_keeps_verify_and_vice_card_when_set() -> None:
    user = UserInfo(pin="7", name="Ann", privilege="14", verify="15", vice_card="99")
    assert user_update(user).command == (
        "DATA UPDATE USERINFO PIN=7\tName=Ann\tPri=14\tPasswd=\tCard=\tVerify=15\tViceCard=99"
    )


def test_unified_templates_copy_as_uploaded() -> None:
    faces = parse_table("BIODATA", vector("017").body)
    last = faces[-1]
    assert isinstance(last, BioTemplate)
    assert biodata_update(last).command == (
        "DATA UPDATE BIODATA Pin=100\tNo=11\tIndex=0\tValid=1\tDuress=0\tType=2\tMajorVer=0"
        f"\tMinorVer=\tFormat=ZK\tTmp={last.template}"
    )
    records = parse_table("BIODATA", vector("005").body)
    palms = [biodata_update(r) for r in records if isinstance(r, BioTemplate)]
    assert [b.command.split("\t")[2] for b in palms] == [f"Index={n}" for n in range(5)]


def test_comparison_photo_copies_with_its_size_recomputed() -> None:
    [photo] = [r for r in parse_table("OPERLOG", vector("014").body) if isinstance(r, BioPhoto)]
    built = biophoto_update(photo)
    assert built.kind == "update_biophoto" and len(photo.content) == 39056
    assert built.command.startswith("DATA UPDATE BIOPHOTO PIN=100\tType=9\tSize=39056\t")
    assert built.command.endswith("\tFormat=0")


def test_user_photo_copies_from_the_spec_upload() -> None:
    [photo] = parse_table("OPERLOG", vector("11.13-", "spec").body)
    assert isinstance(photo, UserPhoto)
    assert (
        userpic_update(photo).command
        == "DATA UPDATE USERPIC PIN=123\tSize=12\tContent=AAAAAAAAAAAA"
    )


def test_templates_copy_with_their_keys() -> None:
    finger = FingerTemplate("3", "6", "28", "3", TMP, True)
    assert finger_update(finger).command == (
        f"DATA UPDATE FINGERTMP PIN=3\tFID=6\tSize=28\tValid=3\tTMP={TMP}"
    )
    face = FaceTemplate("3", "0", "28", "", TMP, True)
    assert (
        face_update(face).command == f"DATA UPDATE FACE PIN=3\tFID=0\tValid=1\tSize=28\tTMP={TMP}"
    )
    vein = VeinTemplate("3", "2", "1", "28", "1", TMP, True)
    assert vein_update(vein).command == (
        f"DATA UPDATE FVEIN Pin=3\tFID=2\tIndex=1\tValid=1\tSize=28\tTmp={TMP}"
    )


def test_templates_that_did_not_match_their_size_are_not_copied() -> None:
    # The spec's own 11.9 example templates do not match their Size.
    finger = parse_table("OPERLOG", vector("11.9-", "spec").body)[0]
    assert isinstance(finger, FingerTemplate) and not finger.size_ok
    with pytest.raises(InvalidCommand, match=r"template: .*Size"):
        finger_update(finger)


# -- replies -----------------------------------------------------------------


def _reply(body: bytes) -> Any:
    [reply] = parse_devicecmd(body)
    return reply


def test_info_reply_options_are_the_data() -> None:
    outcome = interpret("INFO", _reply(vector("019").body))
    assert (outcome.status, outcome.return_code, outcome.meaning) == (
        "succeeded",
        "0",
        "0: Successful",
    )
    options = outcome.data["options"]
    assert options["~OEMVendor"] == "ZKTeco Co., Ltd."
    assert options["MultiBioVersion"] == "0:10.0:0:0:0:0:0:0:12.0:58.10"
    assert options["MaxMCUCardBits"] == ""
    other = interpret("INFO", _reply(vector("036").body)).data["options"]
    assert (other["FvVersion"], other["~MaxFvCount"], other["~DeviceName"]) == (
        "0",
        "",
        "uFace800 Plus",
    )


def test_data_replies_of_one_body_both_succeed() -> None:
    first, second = parse_devicecmd(vector("020").body)
    assert interpret("DATA UPDATE USERINFO PIN=1", first) == Outcome(
        "succeeded", "0", "0: Successful", {}
    )
    assert interpret("DATA DELETE USERINFO PIN=1", second).status == "succeeded"


def test_getfile_minus_two_is_a_missing_file() -> None:
    outcome = interpret("GetFile attlog.dat", _reply(vector("021").body))
    assert outcome == Outcome(
        "failed",
        "-2",
        "-2: The file does not exist or cannot be read",
        {"file_name": "", "size": None, "content": ""},
    )


def test_set_option_with_a_hex_id_succeeds() -> None:
    reply = _reply(vector("048").body)
    assert interpret("SET OPTION TimeZone=3", reply).status == "succeeded"
    assert interpret("", reply).meaning == "0: Successful"


def test_getfile_reply_carries_the_file() -> None:
    content = b"\x00\x01binary\nID=not-a-reply\n\xff"
    body = (
        b"ID=9\nSN=X1\nFILENAME=attlog.dat\nCMD=GetFile\nReturn=%d\nContent=" % len(content)
        + content
    )
    outcome = interpret("GetFile attlog.dat", _reply(body))
    assert outcome == Outcome(
        "succeeded",
        str(len(content)),
        f"{len(content)}: File received, {len(content)} bytes",
        {
            "file_name": "attlog.dat",
            "size": len(content),
            "content": base64.b64encode(content).decode(),
        },
    )


def test_truncated_getfile_fails() -> None:
    body = b"ID=9\nSN=X1\nFILENAME=a.dat\nCMD=GetFile\nReturn=100\nContent=short"
    outcome = interpret("GetFile a.dat", _reply(body))
    assert outcome.status == "failed" and "5 of 100 bytes" in outcome.meaning
    assert outcome.data["content"] == base64.b64encode(b"short").decode()


def test_shell_reply_records_exit_status_and_output() -> None:
    body = b"ID=5\nSN=X1\nReturn=1\nCMD=Shell\nFILENAME=shellout.txt\nContent=no such file\n"
    outcome = interpret("SHELL ls /nope", _reply(body))
    assert outcome == Outcome(
        "succeeded",
        "1",
        "1: Ran, exit status 1",
        {
            "file_name": "shellout.txt",
            "exit_status": 1,
            "output": base64.b64encode(b"no such file\n").decode(),
        },
    )
    # Without the sent text, the reply's CMD says it was a shell command.
    assert interpret("", _reply(body)).data["exit_status"] == 1


def test_shell_without_output_fails() -> None:
    outcome = interpret("SHELL ls", _reply(b"ID=5&Return=-1002&CMD=SHELL"))
    assert (outcome.status, outcome.meaning) == ("failed", "-1002: Not supported by the equipment")
    assert outcome.data == {"file_name": "", "exit_status": -1002, "output": ""}


def test_verify_sum_reply_gives_the_count() -> None:
    body = (
        b"ID=7&Return=0&CMD=VERIFY SUM&StartTime=2015-07-29 00:00:00"
        b"&EndTime=2015-07-29 23:59:59&AttlogSum=42"
    )
    outcome = interpret(
        f"VERIFY SUM ATTLOG StartTime={SPEC_START}\tEndTime={SPEC_END}", _reply(body)
    )
    assert outcome == Outcome(
        "succeeded", "0", "0: Successful", {"start": SPEC_START, "end": SPEC_END, "attlog_sum": 42}
    )
    missing = interpret("VERIFY SUM ATTLOG", _reply(b"ID=7&Return=0&CMD=VERIFY SUM"))
    assert (missing.status, missing.data["attlog_sum"]) == ("failed", None)


@pytest.mark.parametrize(
    "command, body, status, meaning",
    [
        ("ENROLL_FP PIN=1\tFID=6", b"ID=1&Return=0&CMD=ENROLL_FP", "succeeded", "0: Successful"),
        (
            "ENROLL_FP PIN=1\tFID=6",
            b"ID=1&Return=2&CMD=ENROLL_FP",
            "failed",
            "2: Enroll: templates of the user already exist",
        ),
        (
            "ENROLL_BIO TYPE=9\tPIN=1",
            b"ID=1&Return=6&CMD=ENROLL_BIO",
            "failed",
            "6: Enroll: registration was cancelled",
        ),
        ("ENROLL_MF PIN=1", b"ID=1&Return=5&CMD=ENROLL_MF", "failed", "5: Enroll card: timed out"),
        (
            "ENROLL_FP PIN=1",
            b"ID=1&Return=-10&CMD=ENROLL_FP",
            "failed",
            "-10: The user specified by PIN does not exist in the equipment",
        ),
        (
            "DATA UPDATE X",
            b"ID=1&Return=-1002&CMD=DATA",
            "failed",
            "-1002: Not supported by the equipment",
        ),
        ("DATA UPDATE X", b"ID=1&Return=17&CMD=DATA", "failed", "17: Unknown return code"),
        ("DATA UPDATE X", b"ID=1&Return=ok&CMD=DATA", "failed", "ok: Unreadable return code"),
        ("CHECK", b"ID=1&CMD=CHECK", "failed", "No return code"),
        ("DATA QUERY USERINFO", b"ID=1&Return=8&CMD=DATA", "succeeded", "8: Successful, 8 records"),
        (
            "PutFile a.tgz\t/mnt/",
            b"ID=1\nReturn=2048\nCMD=PutFile",
            "succeeded",
            "2048: File saved, 2048 bytes",
        ),
        (
            "PutFile a.tgz\t/mnt/\tAction=SyncData\tTableName=USERINFO\tRecordCount=3",
            b"ID=1\nReturn=3\nCMD=PutFile",
            "succeeded",
            "3: Data synchronized, 3 commands processed",
        ),
        (
            "PutFile a.tgz",
            b"ID=1\nReturn=-1008\nCMD=PutFile",
            "failed",
            "-1008: Failed to get server data",
        ),
        (
            "UPGRADE checksum=a,url=u,size=1",
            b"ID=384&Return=0&CMD=UPGRADE",
            "succeeded",
            "0: Successful",
        ),
    ],
)
def test_return_codes_read_per_appendix_one(
    command: str, body: bytes, status: str, meaning: str
) -> None:
    outcome = interpret(command, _reply(body))
    assert (outcome.status, outcome.meaning) == (status, meaning)


def test_putfile_data_is_the_size_and_extra_params_are_kept() -> None:
    assert interpret("PutFile a.tgz", _reply(b"ID=1\nReturn=2048\nCMD=PutFile")).data == {
        "size": 2048
    }
    sync = interpret("PutFile a\tb\tAction=SyncData", _reply(b"ID=1\nReturn=3\nCMD=PutFile"))
    assert sync.data == {"size": 3, "processed": 3}
    extra = interpret("DATA UPDATE X", _reply(b"ID=1&Return=0&CMD=DATA&Count=3"))
    assert extra.data == {"Count": "3"}
