"""Layer 1: request parameters, the handshake and INFO."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushd.errors import ProtocolError
from pushd.protocol.query import parse_handshake, parse_info, parse_params
from pushd.protocol.records import DeviceInfo, Handshake
from tests.vectors import vector


def test_parameter_names_are_case_insensitive() -> None:
    params = parse_params({b"sn": [b"ABC"], b"TABLE": [b"ATTLOG"], b"Stamp": [b"9999"]})
    assert (params.sn, params.table, params.get("STAMP")) == ("ABC", "ATTLOG", "9999")
    assert "stamp" in params and "options" not in params


@pytest.mark.parametrize("sn", [b"", b"../etc", b"a/b", b"x" * 65, b"A B"])
def test_unsafe_or_missing_serial_numbers_are_refused(sn: bytes) -> None:
    with pytest.raises(ProtocolError):
        _ = parse_params({b"SN": [sn]}).sn
    with pytest.raises(ProtocolError, match="missing SN"):
        _ = parse_params({}).sn


def test_handshake_of_2x_and_3x_firmware() -> None:
    assert parse_handshake(parse_params(vector("001").args)) == Handshake(
        sn="CKJF201960996", push_version="2.4.1", language="69", push_options_flag="1"
    )
    hs = parse_handshake(parse_params(vector("023").args))
    assert (hs.push_version, hs.device_type, hs.language) == ("3.1.2", "acc", "")
    spec = parse_handshake(parse_params(vector("05-", "spec").args))
    assert spec.pushcommkey == "4a9594af164f2b9779b59e8554b5df26" and spec.language == "83"


def test_info_with_ten_and_thirteen_fields() -> None:
    ten = parse_info(parse_params(vector("003").args).get("INFO"))
    assert ten is not None and ten.functions == "11110" and ten.extra == ()
    thirteen = parse_info(parse_params(vector("039").args).get("INFO"))
    assert thirteen == DeviceInfo(
        "ZMM720-NF-Ver1.2.7",
        "1",
        "1",
        "31",
        "80.80.80.3",
        "10",
        "12",
        "12",
        "0",
        "111",
        ("0", "0", "0"),
    )
    spec = parse_info(parse_params(vector("09-", "spec").args).get("info"))
    assert spec is not None and spec.firmware == "Ver 2.0.12-20150625"


def test_short_or_empty_info() -> None:
    assert parse_info("") is None
    assert parse_info("Ver 1.0") == DeviceInfo("Ver 1.0")


@given(st.dictionaries(st.binary(max_size=10), st.lists(st.binary(max_size=20), max_size=2)))
def test_parse_params_never_raises(args: dict) -> None:
    params = parse_params(args)
    try:
        _ = params.sn
    except ProtocolError:
        pass
    parse_info(params.get("info"))
