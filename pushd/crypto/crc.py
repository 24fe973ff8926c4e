# -*- test-case-name: tests.test_crypto_primitives -*-
"""
CRC32 as the protocol's "communication data signature" (spec Appendix 8).

IEEE 802.3, reflected, initial value and final XOR ``0xFFFFFFFF``: exactly
:func:`zlib.crc32`.  A CRC is no integrity protection under a stream cipher
(it is linear, so flipped ciphertext bits can be compensated); ZKX1 keeps it
inside the ciphertext for the spec's sake and relies on an HMAC.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["crc32", "crc32_bytes"]


def crc32(data: bytes) -> int:
    """The CRC32 of ``data`` as an unsigned 32-bit integer."""
    return zlib.crc32(data) & 0xFFFFFFFF


def crc32_bytes(data: bytes) -> bytes:
    """The CRC32 of ``data`` as 4 big-endian bytes, as ZKX1 appends it."""
    return struct.pack(">I", crc32(data))
