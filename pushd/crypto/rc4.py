# -*- test-case-name: tests.test_crypto_primitives -*-
"""
RC4 with the first 3072 keystream bytes dropped ("RC4-drop3072").

RC4 is legacy (RFC 7465 bans it from TLS); ZKX1 keeps it because the vendor
protocol names it, and makes it tolerable with a fresh 256-bit key per
message, the 3072-byte drop (Mironov, IACR ePrint 2002/067) and an HMAC
outside the ciphertext.  pycryptodome does the work.
"""

from __future__ import annotations

from Crypto.Cipher import ARC4

__all__ = ["DROP", "rc4_drop3072"]

#: Keystream bytes discarded before the first byte is used.
DROP = 3072


def rc4_drop3072(key: bytes, data: bytes) -> bytes:
    """
    Encrypt or decrypt ``data`` (the same operation) under ``key``.

    :param key: 1 to 256 bytes; ZKX1 always uses 32.
    :raises ValueError: for a key of another length.
    """
    if not 1 <= len(key) <= 256:
        raise ValueError(f"RC4 key of {len(key)} bytes")
    return bytes(ARC4.new(key, drop=DROP).encrypt(data))
