"""Layer 1: the pure parsers of cdata bodies, on real and spec vectors and arbitrary bytes."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushd.errors import ProtocolError
from pushd.protocol.cdata import parse_attlog, parse_options, parse_table, parse_time, split_lines
from pushd.protocol.records import (
    AttLog,
    BioPhoto,
    BioTemplate,
    ErrorLog,
    FaceTemplate,
    FingerTemplate,
    IdCard,
    OpLog,
    OtherRecord,
    Rejected,
    UserInfo,
    UserPhoto,
    VeinTemplate,
    WorkCode,
)
from tests.vectors import vector


def test_ten_field_punch_keeps_empty_workcode_temperature_and_index() -> None:
    [punch] = parse_table("ATTLOG", vector("009").body)
    assert punch == AttLog(
        "100", "2020-09-22T15:28:54", "0", "15", "", ("0", "0", "0", "36.2", "6")
    )


def test_query_reply_punches_are_all_parsed_including_mask_flags() -> None:
    punches = parse_table("ATTLOG", vector("010").body)
    assert len(punches) == 18
    assert all(isinstance(p, AttLog) for p in punches)
    assert punches[1].extra == ("0", "0", "1", "36.3", "2")


def test_trailing_tab_does_not_add_an_empty_field() -> None:
    [punch] = parse_table("ATTLOG", vector("040").body)
    assert punch == AttLog("1", "2025-11-02T14:49:05", "0", "1", "0", ("0", "0", "0", "0", "0"))


def test_spec_seven_and_nine_field_punches() -> None:
    seven = parse_table("ATTLOG", vector("11.2", "spec").body)
    assert [p.pin for p in seven] == ["1452"] * 7 + ["8965"] * 2
    assert seven[0] == AttLog("1452", "2015-07-30T15:16:28", "0", "1", "0", ("0", "0"))
    nine = parse_table("ATTLOG", vector("11.7", "spec").body)
    assert nine[0].extra == ("0", "0", "210218199105072345", "0")


def test_crlf_and_blank_lines_are_tolerated() -> None:
    body = b"1\t2020-01-02 03:04:05\t0\t1\t0\r\n\r\n2\t2020-01-02 03:04:06\t0\t1\t0\r\n"
    assert [p.pin for p in parse_attlog(body)] == ["1", "2"]


def test_spec_example_without_tabs_splits_on_white_space() -> None:
    [punch] = parse_attlog(b"1452 2015-07-30 15:16:28 0 1 0 0 0")
    assert punch == AttLog("1452", "2015-07-30T15:16:28", "0", "1", "0", ("0", "0"))


def test_junk_line_is_quarantined_not_stored_as_a_punch() -> None:
    records = parse_attlog(b"1\t2020-01-02 03:04:05\t0\t1\t0\ngarbage\n1003\tnot-a-date\n")
    assert isinstance(records[0], AttLog)
    assert [(r.table, r.line, r.reason) for r in records[1:]] == [  # type: ignore[union-attr]
        ("ATTLOG", b"garbage", "fewer than two fields"),
        ("ATTLOG", b"1003\tnot-a-date", "invalid time"),
    ]


def test_body_of_nothing_but_junk_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="no valid ATTLOG record"):
        parse_attlog(b"garbage\n\x00\x01\x02\n")


def test_empty_body_is_no_records() -> None:
    assert parse_table("ATTLOG", b"") == []
    assert parse_table("OPERLOG", b"\r\n") == []


def test_undecodable_name_is_kept_with_its_raw_line() -> None:
    line = b"USER PIN=7\tName=\xff\xfe\tPri=0"
    [user] = parse_table("OPERLOG", line)
    assert isinstance(user, UserInfo)
    assert user.pin == "7" and user.raw == line and "\ufffd" in user.name


def test_chinese_device_names_decode_as_gb2312() -> None:
    name = "张三".encode("gb2312")
    [user] = parse_table("OPERLOG", b"USER PIN=8\tName=" + name, codec="gb18030")
    assert isinstance(user, UserInfo)
    assert user.name == "张三" and user.raw is None


def test_oplog_keeps_non_numeric_values() -> None:
    records = parse_table("OPERLOG", vector("004").body)
    assert len(records) == 6
    assert records[3] == OpLog("5", "0", "2020-06-23T13:20:44", ("DHCP", "0", "0", "0"))


def test_user_with_space_in_pin_and_duplicate_name_is_kept() -> None:
    [user] = parse_table("OPERLOG", vector("012").body)
    assert isinstance(user, UserInfo)
    assert user.pin == "100 Name=Jorge Leon"
    assert user.name == ""
    assert user.password == "1234" and user.verify == "-1"
    assert ("StartDatetime", "0") in user.fields and user.fields[1] == ("Name", "")


def test_spec_users() -> None:
    users = parse_table("OPERLOG", vector("11.5", "spec").body)
    assert [(u.pin, u.card, u.group) for u in users] == [  # type: ignore[union-attr]
        ("36234", "133440", "1"),
        ("36235", "133441", "1"),
    ]


def test_comparison_photo_in_operlog_decodes_and_matches_size() -> None:
    [photo] = parse_table("OPERLOG", vector("014").body)
    assert isinstance(photo, BioPhoto)
    assert (photo.pin, photo.type, photo.size, photo.size_ok) == ("100", "9", "39056", True)
    assert base64.b64decode(photo.content).startswith(b"\xff\xd8")
    assert all(k != "Content" for k, _ in photo.fields)


def test_unified_templates_keep_every_key() -> None:
    palms = parse_table("BIODATA", vector("005").body)
    assert [(t.type, t.no, t.index) for t in palms] == [("8", "0", str(i)) for i in range(5)]  # type: ignore[union-attr]
    faces = parse_table("BIODATA", vector("017").body)
    assert len(faces) == 12
    face = faces[0]
    assert isinstance(face, BioTemplate)
    assert (face.major_ver, face.minor_ver, face.format, face.size_ok) == ("0", "", "ZK", True)


def test_size_mismatch_is_flagged_not_rejected() -> None:
    good = base64.b64encode(b"x" * 30).decode()
    [fp] = parse_table(
        "OPERLOG", f"FP PIN=1\tFID=2\tSize={len(good)}\tValid=1\tTMP={good}".encode()
    )
    [bad] = parse_table("OPERLOG", f"FP PIN=1\tFID=2\tSize=999\tValid=1\tTMP={good}".encode())
    [binary] = parse_table("OPERLOG", f"FP PIN=1\tFID=2\tSize=30\tValid=1\tTMP={good}".encode())
    [broken] = parse_table("OPERLOG", b"FP PIN=1\tFID=2\tSize=4\tValid=1\tTMP=%%%%")
    assert isinstance(fp, FingerTemplate) and fp.size_ok
    assert isinstance(bad, FingerTemplate) and not bad.size_ok and bad.template == good
    assert isinstance(binary, FingerTemplate) and binary.size_ok
    assert isinstance(broken, FingerTemplate) and not broken.size_ok


def test_spec_template_examples_parse_into_their_kinds() -> None:
    kinds = {
        "11.9": FingerTemplate,
        "11.10": FaceTemplate,
        "11.11": VeinTemplate,
        "11.12": BioTemplate,
        "11.13": UserPhoto,
        "11.15": BioPhoto,
        "11.16": ErrorLog,
        "11.6": IdCard,
    }
    for section, kind in kinds.items():
        v = vector(section + "-", "spec")
        records = parse_table(v.param("table"), v.body)
        assert records and all(isinstance(r, kind) for r in records), section


def test_mixed_operlog_is_split_by_record_kind() -> None:
    body = (
        b"OPLOG 4\t14\t2015-07-30 10:22:34\t0\t0\t0\t0\n"
        b"USER PIN=1\tName=A\n"
        b"WORKCODE PIN=3\tCODE=77\tNAME=Night\n"
        b"SMS MSG=hi\tTAG=253\n"
        b"ERRORLOG ErrCode=D01E0002\tErrMsg=x\tDataOrigin=dev\tCmdId=\tAdditional=\n"
        b"IDCARD PIN=0\tIDNum=123\tName=B\n"
        b"USER Name=no-pin\n"
    )
    records = parse_table("OPERLOG", body)
    assert [type(r) for r in records] == [
        OpLog,
        UserInfo,
        WorkCode,
        OtherRecord,
        ErrorLog,
        IdCard,
        Rejected,
    ]
    assert records[3] == OtherRecord("SMS", (("MSG", "hi"), ("TAG", "253")))


def test_idcard_fields_are_all_kept() -> None:
    [card] = parse_table("IDCARD", vector("11.6", "spec").body)
    assert isinstance(card, IdCard)
    assert card.id_num == "xxxxxx19911218xxxx" and card.sn_num == "xxxxxxxx460088xxxxxx"
    assert dict(card.fields)["Issuer"] == " County xxx public security bureau"


def test_options_values_with_commas_and_padding_are_kept() -> None:
    options = parse_options(vector("002").body)
    assert options["~OEMVendor"] == "ZKTeco Co., Ltd."
    assert options["RegDeviceType"] == ""
    assert options["MultiBioDataSupport"] == "0:1:0:0:0:0:0:0:1:1"
    padded = parse_options(vector("041").body)
    assert padded["~OEMVendor"] == " ZKTeco Inc. "
    assert padded["~LockFunOn"] == "15"


def test_options_on_lines_and_spec_example() -> None:
    assert parse_options(b"A=1\nB=2,C=") == {"A": "1", "B": "2", "C": ""}
    assert parse_options(vector("08-", "spec").body) == {"FingerFunOn": "1", "FaceFunOn": "1"}


def test_options_without_pairs_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse_options(b"nothing here")


@pytest.mark.parametrize(
    "text, expected",
    [
        (b"2015-07-29 11:11:11", "2015-07-29T11:11:11"),
        (b"2015-7-9 1:2:3", "2015-07-09T01:02:03"),
        (b"2015-07-30 15: 16: 28", "2015-07-30T15:16:28"),
        (b"2015-07-30T15:16:28", "2015-07-30T15:16:28"),
    ],
)
def test_parse_time_accepts_device_forms(text: bytes, expected: str) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", [b"2015-13-01 00:00:00", b"yesterday", b"2015-02-30 10:00:00"])
def test_parse_time_refuses_impossible_times(text: bytes) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


tables = st.sampled_from(["ATTLOG", "OPERLOG", "BIODATA", "IDCARD", "ERRORLOG", "whatever"])


@given(table=tables, body=st.binary(max_size=2000))
def test_parse_table_raises_nothing_but_protocol_error(table: str, body: bytes) -> None:
    try:
        records = parse_table(table, body)
    except ProtocolError:
        return
    assert len(records) == len(split_lines(body))


@given(
    body=st.lists(
        st.one_of(
            st.binary(max_size=80),
            st.builds(
                lambda k, v: k + b"=" + v,
                st.sampled_from([b"USER PIN", b"FP PIN", b"BIODATA Pin", b"OPLOG 1\t2", b"x"]),
                st.binary(max_size=40),
            ),
        ),
        max_size=8,
    ).map(lambda parts: b"\t".join(parts))
)
def test_keyed_parser_survives_near_miss_records(body: bytes) -> None:
    try:
        parse_table("OPERLOG", body)
    except ProtocolError:
        pass


@given(body=st.binary(max_size=2000))
def test_parse_options_raises_nothing_but_protocol_error(body: bytes) -> None:
    try:
        parse_options(body)
    except ProtocolError:
        pass


safe_text = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\t"
    ),
    max_size=12,
)


@given(
    pin=safe_text.filter(lambda s: s.strip() == s and s != ""),
    when=st.datetimes(min_value=__import__("datetime").datetime(1990, 1, 1)).map(
        lambda d: d.replace(microsecond=0)
    ),
    status=st.integers(0, 255).map(str),
    verify=st.integers(0, 200).map(str),
    workcode=st.integers(0, 999).map(str),
    extra=st.lists(st.integers(0, 9).map(str), max_size=5),
)
def test_punch_lines_round_trip(
    pin: str, when: object, status: str, verify: str, workcode: str, extra: list
) -> None:
    stamp = when.strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[attr-defined]
    line = "\t".join([pin, stamp, status, verify, workcode, *extra]).encode()
    [punch] = parse_attlog(line)
    assert punch == AttLog(pin, stamp.replace(" ", "T"), status, verify, workcode, tuple(extra))
