"""
"Only the documented error" properties for the parsers of device input that
``tests/test_protocol_*.py`` do not cover yet: raw commands, INFO lists,
handshakes, tgz packs built from real tar headers, photo names, command
reply interpretation, exchange bodies, device text in GB18030, and the
malformed inputs kept in ``fuzz/corpus/``.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import tarfile
from typing import Any, Dict, List, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushd.crypto.errors import CryptoError
from pushd.crypto.vendor import recognise_publickey
from pushd.crypto.zkx1 import b64decode_strict, parse_exchange_body
from pushd.errors import ProtocolError
from pushd.protocol.cdata import parse_options, parse_table, parse_time, split_lines
from pushd.protocol.commands import InvalidCommand, interpret, validate_raw
from pushd.protocol.devicecmd import parse_devicecmd
from pushd.protocol.packs import PackLimits, read_pack
from pushd.protocol.photo import parse_photo_name, split_nul_upload
from pushd.protocol.query import parse_handshake, parse_info, parse_params
from pushd.protocol.records import CommandReply, DeviceInfo
from pushd.protocol.text import codec_for, decode

# Under ``python -b -W error::BytesWarning`` (tox), hypothesis' own example cache compares
# int and bytes keys on a hash collision; only that warning, only from there, is ignored.
pytestmark = pytest.mark.filterwarnings("ignore::BytesWarning:hypothesis.internal.cache")

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz", "corpus")

#: Any text, lone surrogates included (what a JSON API request can carry).
any_text = st.text(alphabet=st.characters(), max_size=80)


# -- commands ------------------------------------------------------------------


@given(st.one_of(any_text, st.none(), st.integers(), st.binary(max_size=10)))
def test_validate_raw_raises_nothing_but_invalid_command(value: Any) -> None:
    try:
        built = validate_raw(value)
    except InvalidCommand as error:
        assert isinstance(error, ProtocolError)
        return
    assert isinstance(value, str)
    assert built.command == value.strip(" \t") and built.command
    assert not any(ch in built.command for ch in "\r\n\x00")


verbs = st.sampled_from(
    [
        "",
        "DATA UPDATE USERINFO PIN=1",
        "DATA QUERY ATTLOG StartTime=2021-01-01 00:00:00",
        "INFO",
        "SHELL ls",
        "GetFile a.txt",
        "PutFile x.tgz a.tgz ACTION=SYNCDATA",
        "PutFile x a",
        "VERIFY SUM ATTLOG",
        "ENROLL_FP PIN=1",
        "ENROLL_BIO TYPE=9",
        "ENROLL_MF PIN=1",
        "REBOOT",
    ]
)
return_codes = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["", " ", "+0", "-0", "0x10", "1e3", "\u0661", "999999999999999999"]),
    any_text,
)


@given(
    command=st.one_of(verbs, any_text),
    rc=return_codes,
    params=st.lists(st.tuples(any_text, any_text), max_size=4),
    lines=st.lists(st.tuples(any_text, any_text), max_size=4),
    content=st.one_of(st.none(), st.binary(max_size=50)),
)
def test_interpret_reads_any_reply_to_any_command(
    command: str,
    rc: str,
    params: List[Tuple[str, str]],
    lines: List[Tuple[str, str]],
    content: Any,
) -> None:
    reply = CommandReply("1", rc, command[:10], tuple(params), tuple(lines), content)
    outcome = interpret(command, reply)
    assert outcome.status in ("succeeded", "failed")
    assert isinstance(outcome.meaning, str)


@given(command=st.one_of(verbs, any_text), body=st.binary(max_size=400))
def test_device_replies_parse_then_interpret_or_are_protocol_errors(
    command: str, body: bytes
) -> None:
    try:
        replies = parse_devicecmd(body)
    except ProtocolError:
        return
    for reply in replies:
        assert interpret(command, reply).status in ("succeeded", "failed")


# -- query parameters -------------------------------------------------------


@given(any_text)
def test_parse_info_never_raises(value: str) -> None:
    info = parse_info(value)
    assert info is None or isinstance(info, DeviceInfo)
    if info is not None:
        assert len(info.extra) == max(0, len(value.split(",")) - 10)


@given(
    st.dictionaries(
        st.sampled_from(
            [b"SN", b"sn", b"pushver", b"language", b"pushcommkey", b"DeviceType", b"x"]
        ),
        st.lists(st.binary(max_size=70), max_size=2),
    )
)
def test_parse_handshake_raises_nothing_but_protocol_error(args: Dict[bytes, List[bytes]]) -> None:
    try:
        handshake = parse_handshake(parse_params(args))
    except ProtocolError:
        return
    assert handshake.sn and len(handshake.sn) <= 64


# -- text ----------------------------------------------------------------------


@given(language=any_text, data=st.binary(max_size=200))
def test_device_text_always_decodes(language: str, data: bytes) -> None:
    text, lossy = decode(data, codec_for(language))
    assert isinstance(text, str) and isinstance(lossy, bool)


@given(
    table=st.sampled_from(["ATTLOG", "OPERLOG", "BIODATA", "IDCARD", "ERRORLOG"]),
    body=st.binary(max_size=1000),
)
def test_parse_table_in_gb18030_raises_nothing_but_protocol_error(table: str, body: bytes) -> None:
    try:
        records = parse_table(table, body, "gb18030")
    except ProtocolError:
        return
    assert len(records) == len(split_lines(body))


@given(body=st.binary(max_size=500))
def test_parse_options_in_gb18030_raises_nothing_but_protocol_error(body: bytes) -> None:
    try:
        parse_options(body, "gb18030")
    except ProtocolError:
        pass


@given(st.binary(max_size=40))
def test_parse_time_raises_nothing_but_value_error(value: bytes) -> None:
    try:
        text = parse_time(value)
    except ValueError:
        return
    assert len(text) == 19 and text[10] == "T"


# -- photos --------------------------------------------------------------------


@given(any_text)
def test_photo_names_never_raise(name: str) -> None:
    when, photo_type, pin, id_num = parse_photo_name(name)
    assert all(isinstance(part, str) for part in (when, photo_type, pin, id_num))


@given(st.binary(max_size=300))
def test_nul_uploads_raise_nothing_but_protocol_error(body: bytes) -> None:
    try:
        headers, payload = split_nul_upload(body)
    except ProtocolError:
        return
    assert headers and body.endswith(payload)


# -- data packs built from real tar headers --------------------------------


def _tar(members: List[Tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in members:
            info = tarfile.TarInfo(name or "x")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _flip(data: bytes, at: int, value: int) -> bytes:
    if not data:
        return data
    at %= len(data)
    return data[:at] + bytes([value]) + data[at + 1 :]


tars = st.lists(
    st.tuples(st.text("abc./-_", max_size=12), st.binary(max_size=300)), min_size=1, max_size=4
).map(_tar)


@given(
    tar=tars,
    flips=st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 4096)),
)
def test_damaged_tar_inside_good_gzip_is_a_protocol_error(
    tar: bytes, flips: List[Tuple[int, int]], cut: Any
) -> None:
    for at, value in flips:
        tar = _flip(tar, at, value)
    if cut is not None:
        tar = tar[:cut]
    try:
        read_pack(gzip.compress(tar), PackLimits(max_members=3, max_total=4096, max_ratio=50))
    except ProtocolError:
        pass


@given(
    pack=tars.map(gzip.compress),
    flips=st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), min_size=1, max_size=3),
)
def test_damaged_gzip_is_a_protocol_error(pack: bytes, flips: List[Tuple[int, int]]) -> None:
    for at, value in flips:
        pack = _flip(pack, at, value)
    try:
        read_pack(pack)
    except ProtocolError:
        pass


@given(st.binary(max_size=400))
def test_any_bytes_as_a_pack_are_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_pack(data)


# -- the crypto exchange bodies --------------------------------------------


@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.tuples(
            st.sampled_from([b"PublicKey", b"publickey", b" Factors", b"x", b""]),
            st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(base64.b64encode)),
        ).map(lambda t: t[0] + b"=" + t[1]),
    ),
    name=st.sampled_from(["PublicKey", "Factors"]),
)
def test_exchange_bodies_raise_nothing_but_crypto_errors(body: bytes, name: str) -> None:
    try:
        value = parse_exchange_body(body, name)
    except CryptoError:
        return
    assert value
    recognise_publickey(body.partition(b"=")[2])


@given(st.binary(max_size=200))
def test_strict_base64_raises_nothing_but_value_error(data: bytes) -> None:
    try:
        b64decode_strict(data)
    except ValueError:
        pass


# -- the corpus of malformed inputs ---------------------------------------


def _corpus() -> List[str]:
    if not os.path.isdir(CORPUS):
        return []
    return sorted(
        os.path.join(folder, name)
        for folder, _, names in os.walk(CORPUS)
        for name in names
        if not name.startswith(".")
    )


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: os.path.relpath(p, CORPUS))
def test_every_corpus_input_raises_nothing_but_the_documented_errors(path: str) -> None:
    """The inputs of ``fuzz/corpus/`` through every parser the harness drives."""
    from fuzz.fuzz_parsers import run_one

    with open(path, "rb") as handle:
        run_one(handle.read())


def test_the_corpus_is_there() -> None:
    assert len(_corpus()) >= 20
