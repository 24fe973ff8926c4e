"""Layer 1: command replies (spec 13)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushd.errors import ProtocolError
from pushd.protocol.devicecmd import parse_devicecmd
from tests.vectors import vector


def test_two_results_in_one_body() -> None:
    replies = parse_devicecmd(vector("020").body)
    assert [(r.cmd_id, r.return_code, r.cmd) for r in replies] == [
        ("287", "0", "DATA"),
        ("288", "0", "DATA"),
    ]
    assert replies[0].raw == b"ID=287&Return=0&CMD=DATA\n"


def test_spec_example_five_results() -> None:
    ids = [r.cmd_id for r in parse_devicecmd(vector("13-", "spec").body)]
    assert ids == ["info8487", "info8488", "info8489", "info7464", "fp7464"]


def test_info_reply_lines_are_kept_in_order() -> None:
    [reply] = parse_devicecmd(vector("019").body)
    assert (reply.cmd_id, reply.return_code, reply.cmd) == ("1626", "0", "INFO")
    lines = dict(reply.lines)
    assert lines["~OEMVendor"] == "ZKTeco Co., Ltd."
    assert lines["MultiBioVersion"] == "0:10.0:0:0:0:0:0:0:12.0:58.10"
    assert lines["MaxMCUCardBits"] == ""
    [other] = parse_devicecmd(vector("036").body)
    assert dict(other.lines)["FvVersion"] == "0"


def test_getfile_failure_and_hex_ids_and_spaced_cmd() -> None:
    [failed] = parse_devicecmd(vector("021").body)
    assert (failed.return_code, failed.cmd, failed.content) == ("-2", "GetFile", None)
    [hexid] = parse_devicecmd(vector("048").body)
    assert (hexid.cmd_id, hexid.cmd) == ("ccf93e17c31a4beb", "SET OPTION")


def test_getfile_content_is_exact_bytes_of_the_returned_size() -> None:
    content = b"\x00\x01binary\nID=not-a-reply\n\xff"
    body = (
        b"ID=9\nSN=X1\nFILENAME=attlog.dat\nCMD=GetFile\nReturn=%d\nContent=" % len(content)
        + content
        + b"\nID=10&Return=0&CMD=DATA\n"
    )
    first, second = parse_devicecmd(body)
    assert first.content == content and dict(first.params)["FILENAME"] == "attlog.dat"
    assert (second.cmd_id, second.return_code) == ("10", "0")


def test_shell_output_runs_to_the_end() -> None:
    body = b"ID=5\nSN=X1\nReturn=0\nCMD=Shell\nFILENAME=shellout.txt\nContent=total 0\nline two\n"
    [reply] = parse_devicecmd(body)
    assert (reply.cmd, reply.return_code, reply.content) == ("Shell", "0", b"total 0\nline two\n")


@pytest.mark.parametrize("body", [b"", b"\n\n", b"Return=0&CMD=DATA", b"hello"])
def test_bodies_without_results_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_devicecmd(body)


@given(st.binary(max_size=600))
def test_devicecmd_parser_raises_nothing_but_protocol_error(body: bytes) -> None:
    try:
        replies = parse_devicecmd(body)
    except ProtocolError:
        return
    assert replies


@given(
    st.lists(
        st.tuples(
            st.text("abcdef0123456789", min_size=1, max_size=16),
            st.integers(-1008, 5),
            st.sampled_from(["DATA", "INFO", "SET OPTION", "CHECK", "REBOOT"]),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_formatted_results_round_trip(results: list) -> None:
    body = "".join(f"ID={i}&Return={r}&CMD={c}\n" for i, r, c in results).encode()
    parsed = [(p.cmd_id, int(p.return_code), p.cmd) for p in parse_devicecmd(body)]
    assert parsed == results
