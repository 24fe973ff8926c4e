"""Layer 1: attendance photo uploads (spec 11.3, 11.8)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushd.errors import ProtocolError
from pushd.protocol.photo import parse_attphoto, parse_photo_name, split_nul_upload

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) + b"\x00\x00\xff\xd9"


def upload(name: str, image: bytes = JPEG) -> bytes:
    return (
        f"PIN={name}\nSN=0316144680030\nsize={len(image)}\nCMD=uploadphoto".encode()
        + b"\x00"
        + image
    )


def test_photo_header_and_binary_with_nuls_inside() -> None:
    photo, image = parse_attphoto(upload("20150731103012-123.jpg"))
    assert image == JPEG
    assert (photo.name, photo.time, photo.pin, photo.photo_type) == (
        "20150731103012-123.jpg",
        "2015-07-31T10:30:12",
        "123",
        "",
    )
    assert photo.stored_size == len(JPEG) and photo.size == str(len(JPEG))
    assert photo.sha256 == hashlib.sha256(JPEG).hexdigest()


def test_identity_card_photo_name_parts() -> None:
    assert parse_photo_name("20160615093758-0-1457-210218199011304365.jpg") == (
        "2016-06-15T09:37:58",
        "0",
        "1457",
        "210218199011304365",
    )
    assert parse_photo_name("../../etc/passwd") == ("", "", "", "")


def test_base64_photo_when_the_server_asked_for_it() -> None:
    _, image = parse_attphoto(upload("20150731103012-1.jpg", base64.b64encode(JPEG)), True)
    assert image == JPEG


def test_spec_example_header_on_one_line() -> None:
    body = b"PIN=20150731103012-123.jpg SN=0316144680030 size=9512 CMD=uploadphoto\x00" + JPEG
    headers, payload = split_nul_upload(body)
    assert dict(headers)["size"] == "9512" and payload == JPEG


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"PIN=1.jpg\nSN=1", "without the NUL"),
        (b"\x00" + JPEG, "no key=value"),
        (b"SN=1\x00" + JPEG, "without PIN"),
        (b"PIN=1.jpg\x00", "without image bytes"),
    ],
)
def test_malformed_photo_uploads_are_protocol_errors(body: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_attphoto(body)


@given(st.binary(max_size=500), st.booleans())
def test_photo_parser_raises_nothing_but_protocol_error(body: bytes, b64: bool) -> None:
    try:
        parse_attphoto(body, b64)
    except ProtocolError:
        pass
