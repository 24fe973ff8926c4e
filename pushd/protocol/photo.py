# -*- test-case-name: tests.test_protocol_photo -*-
"""
Attendance photo uploads (spec 11.3, 11.8): header lines, a NUL, the image.

``PIN=20160615093758-0-1457-210218199011304365.jpg<LF>SN=..<LF>size=9512<LF>
CMD=uploadphoto<NUL><JPEG bytes>``; with ``ATTPHOTOBase64=1`` the image is
base64 text.  The ``PIN=`` value is a file name the device built; we parse the
time, photo type, user and ID number out of it but never use it as a path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import List, Tuple

from pushd.errors import ProtocolError
from pushd.protocol.cdata import parse_time
from pushd.protocol.records import AttPhoto, Fields

__all__ = ["parse_attphoto", "parse_photo_name", "split_nul_upload"]

_NAME = re.compile(r"\A(\d{14})(?:-(.*))?\Z")


def split_nul_upload(body: bytes) -> Tuple[Fields, bytes]:
    """
    Split an upload at its first NUL into header ``key=value`` pairs and payload.

    :raises ProtocolError: when there is no NUL or no ``key=value`` header.
    """
    head, nul, payload = body.partition(b"\x00")
    if not nul:
        raise ProtocolError("photo upload without the NUL that ends its header")
    text = head.decode("utf-8", "replace")
    lines = text.splitlines()
    if len(lines) == 1 and text.count("=") > 1:
        lines = text.split()  # the spec example's header, all on one line
    pairs: List[Tuple[str, str]] = []
    for line in lines:
        key, eq, value = line.partition("=")
        if eq and key.strip():
            pairs.append((key.strip(), value.strip()))
    if not pairs:
        raise ProtocolError("photo upload header holds no key=value line")
    return tuple(pairs), payload


def parse_photo_name(name: str) -> Tuple[str, str, str, str]:
    """
    Parse a photo name: ``<yyyyMMddHHmmss>-<pin>.jpg`` (11.3) or
    ``<yyyyMMddHHmmss>-<type>-<pin>-<id number>.jpg`` (11.8).

    :returns: ``(time, photo_type, pin, id_num)``, empty strings where absent.
    """
    stem = name[:-4] if name.lower().endswith(".jpg") else name
    match = _NAME.match(stem)
    if match is None:
        return "", "", "", ""
    stamp, rest = match.group(1), match.group(2) or ""
    try:
        date, clock = stamp[:8], stamp[8:]
        text = f"{date[:4]}-{date[4:6]}-{date[6:]} {clock[:2]}:{clock[2:4]}:{clock[4:]}"
        when = parse_time(text.encode())
    except ValueError:
        when = ""
    parts = rest.split("-") if rest else []
    if len(parts) >= 3:
        return when, parts[0], parts[1], "-".join(parts[2:])
    return when, "", rest, ""


def parse_attphoto(body: bytes, base64_payload: bool = False) -> Tuple[AttPhoto, bytes]:
    """
    Parse an ATTPHOTO upload.

    :param base64_payload: the server sent ``ATTPHOTOBase64=1``; a payload
        that is not valid base64 is then kept as sent.
    :returns: the photo's metadata (``path`` still empty) and the image bytes.
    :raises ProtocolError: without a NUL, a ``PIN=`` header or any image byte.
    """
    headers, payload = split_nul_upload(body)
    values = {k.lower(): v for k, v in reversed(headers)}
    name = values.get("pin", "")
    if not name:
        raise ProtocolError("photo upload without PIN= (its file name)")
    if base64_payload:
        try:
            payload = base64.b64decode(b"".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            pass
    if not payload:
        raise ProtocolError("photo upload without image bytes")
    when, photo_type, pin, id_num = parse_photo_name(name)
    photo = AttPhoto(
        name=name,
        time=when,
        photo_type=photo_type,
        pin=pin,
        id_num=id_num,
        size=values.get("size", ""),
        stored_size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        headers=headers,
    )
    return photo, payload
