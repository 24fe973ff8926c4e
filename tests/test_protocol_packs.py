"""Layer 1: tgz data packets (spec 11.14)."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushd.errors import ProtocolError
from pushd.protocol.packs import PackLimits, read_pack


def pack(members: dict) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_members_are_concatenated_in_order_with_line_breaks() -> None:
    data = pack({"user.dat": b"USER PIN=1\tName=A", "../../fp.dat": b"USER PIN=2\tName=B\n"})
    assert read_pack(data) == b"USER PIN=1\tName=A\nUSER PIN=2\tName=B\n"


def test_too_many_members_is_refused() -> None:
    data = pack({f"m{i}": b"x" for i in range(5)})
    with pytest.raises(ProtocolError, match="more than 3 members"):
        read_pack(data, PackLimits(max_members=3))


def test_a_highly_compressed_member_is_refused_before_it_is_read() -> None:
    data = pack({"bomb": b"\0" * 2_000_000})
    assert len(data) < 10_000
    with pytest.raises(ProtocolError, match="size limit"):
        read_pack(data, PackLimits(max_ratio=50))


def test_not_an_archive_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="damaged data pack"):
        read_pack(b"USER PIN=1")
    with pytest.raises(ProtocolError, match="damaged data pack"):
        read_pack(gzip.compress(b"not a tar"))


@given(st.binary(max_size=400))
def test_pack_reader_raises_nothing_but_protocol_error(data: bytes) -> None:
    try:
        read_pack(gzip.compress(data))
    except ProtocolError:
        pass
