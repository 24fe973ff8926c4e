# -*- test-case-name: tests.test_crypto_keys -*-
"""
RSA keys of the ZKX1 profile.

* The server key: RSA-3072, e = 65537, generated on first use and kept as a
  PKCS#8 PEM file (``zkx1-server-key.pem``) in the data directory, mode
  0600, created atomically so that two processes starting together end up
  with the same key.  Optionally encrypted with a passphrase.
* Its fingerprint, which clients pin: SHA-256 of the DER
  SubjectPublicKeyInfo, in lowercase hex.
* Device keys: DER SubjectPublicKeyInfo, RSA-2048 to RSA-4096, e = 65537.
* RSA-OAEP with SHA-256, MGF1-SHA-256 and an empty label (RFC 8017).
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Callable, Optional, Union

from Crypto.Cipher import PKCS1_OAEP
from Crypto.Hash import SHA256
from Crypto.PublicKey import RSA
from Crypto.Random import get_random_bytes

from pushd.crypto.errors import BadDeviceKey, ExchangeFailed, KeyStoreError

__all__ = [
    "DEVICE_KEY_BITS",
    "EXPONENT",
    "SERVER_KEY_BITS",
    "SERVER_KEY_FILE",
    "RandomBytes",
    "fingerprint",
    "import_device_key",
    "load_or_create_server_key",
    "load_server_key",
    "oaep_decrypt",
    "oaep_encrypt",
    "spki_der",
]

#: A source of random bytes, ``f(n) -> n bytes``.
RandomBytes = Callable[[int], bytes]

SERVER_KEY_FILE = "zkx1-server-key.pem"
SERVER_KEY_BITS = 3072
#: The accepted sizes of device keys, in bits (inclusive).
DEVICE_KEY_BITS = (2048, 4096)
EXPONENT = 65537


def spki_der(key: RSA.RsaKey) -> bytes:
    """The DER SubjectPublicKeyInfo of the public half of ``key``."""
    return bytes(key.public_key().export_key(format="DER"))


def fingerprint(key: Union[RSA.RsaKey, bytes]) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo (given, or of ``key``), lowercase hex."""
    der = key if isinstance(key, bytes) else spki_der(key)
    return hashlib.sha256(der).hexdigest()


# -- device keys ----------------------------------------------------------------


def import_device_key(der: bytes) -> RSA.RsaKey:
    """
    Read a device public key sent as DER SubjectPublicKeyInfo.

    Only the canonical DER SPKI encoding of an RSA public key of 2048 to 4096
    bits with e = 65537 is accepted: no PEM, no PKCS#1, no private key.

    :raises BadDeviceKey: for anything else.
    """
    try:
        key = RSA.import_key(der)
    except (ValueError, IndexError, TypeError, KeyError):
        raise BadDeviceKey("device key is not an RSA public key") from None
    if key.has_private():
        raise BadDeviceKey("device sent a private key")
    if spki_der(key) != der:
        raise BadDeviceKey("device key is not in DER SubjectPublicKeyInfo form")
    low, high = DEVICE_KEY_BITS
    bits = key.size_in_bits()
    if not low <= bits <= high:
        raise BadDeviceKey(f"device key of {bits} bits (accepted: {low} to {high})")
    if key.e != EXPONENT:
        raise BadDeviceKey(f"device key exponent {key.e} (accepted: {EXPONENT})")
    return key


# -- RSA-OAEP -------------------------------------------------------------------


def oaep_encrypt(key: RSA.RsaKey, plaintext: bytes, randfunc: RandomBytes) -> bytes:
    """RSA-OAEP-SHA256 encryption of ``plaintext`` to ``key``."""
    cipher = PKCS1_OAEP.new(key, hashAlgo=SHA256, randfunc=randfunc)
    return bytes(cipher.encrypt(plaintext))


def oaep_decrypt(key: RSA.RsaKey, ciphertext: bytes) -> bytes:
    """
    RSA-OAEP-SHA256 decryption with the private ``key``.

    :raises ExchangeFailed: wrong length or bad padding, with no distinction
        visible to the client.
    """
    if len(ciphertext) != key.size_in_bytes():
        raise ExchangeFailed(
            f"factor of {len(ciphertext)} bytes for a {key.size_in_bytes()}-byte modulus"
        )
    try:
        return bytes(PKCS1_OAEP.new(key, hashAlgo=SHA256).decrypt(ciphertext))
    except (ValueError, TypeError):
        raise ExchangeFailed("OAEP decryption of the factor failed") from None


# -- the server key -------------------------------------------------------------


def _check_server_key(key: RSA.RsaKey, path: str) -> RSA.RsaKey:
    if not key.has_private():
        raise KeyStoreError(f"{path} holds no private key")
    if key.size_in_bits() < SERVER_KEY_BITS or key.e != EXPONENT:
        raise KeyStoreError(
            f"{path}: the server key must be RSA-{SERVER_KEY_BITS} or larger with e={EXPONENT}"
        )
    return key


def load_server_key(path: str, passphrase: Optional[str] = None) -> RSA.RsaKey:
    """
    Read the server key from a PEM file that only its owner may read.

    :raises KeyStoreError: the file is missing, unreadable, readable by group
        or others (POSIX), not an RSA private key, or too small.
    """
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            pem = f.read()
    except OSError as e:
        raise KeyStoreError(f"cannot read the server key {path}: {e.strerror}") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyStoreError(f"{path} is accessible by group or others; chmod 600 it")
    try:
        key = RSA.import_key(pem, passphrase)
    except (ValueError, IndexError, TypeError, KeyError):
        raise KeyStoreError(f"{path} is not a readable RSA key (wrong passphrase?)") from None
    return _check_server_key(key, path)


def load_or_create_server_key(
    directory: str,
    passphrase: Optional[str] = None,
    bits: int = SERVER_KEY_BITS,
    randfunc: RandomBytes = get_random_bytes,
) -> RSA.RsaKey:
    """
    The server key in ``directory``, generated (``bits``, e = 65537) and stored
    on first use.

    The directory is created with mode 0700 if needed.  A new key is written
    to a temporary file opened with mode 0600, flushed to disk and linked to
    its final name, which never exists half-written; if another process
    linked its key first, that key is loaded instead.  Generating takes a few
    seconds: call this at start-up, not per request.

    :raises KeyStoreError: the key cannot be stored or read back.
    """
    path = os.path.join(directory, SERVER_KEY_FILE)
    if os.path.exists(path):
        return load_server_key(path, passphrase)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as e:
        raise KeyStoreError(f"cannot create {directory}: {e.strerror}") from None
    key = RSA.generate(bits, randfunc=randfunc, e=EXPONENT)
    if passphrase is None:
        pem = key.export_key(format="PEM", pkcs=8)
    else:
        pem = key.export_key(
            format="PEM", pkcs=8, passphrase=passphrase, protection="scryptAndAES128-CBC"
        )
    temporary = f"{path}.{os.getpid()}.{randfunc(8).hex()}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(pem)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        _fsync_directory(directory)
    except OSError as e:
        raise KeyStoreError(f"cannot store the server key in {directory}: {e.strerror}") from None
    finally:
        try:
            os.unlink(temporary)
        except OSError:
            pass
    return load_server_key(path, passphrase)


def _fsync_directory(directory: str) -> None:
    if os.name != "posix":  # pragma: no cover
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
