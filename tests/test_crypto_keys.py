"""Layer 1: the server key on disk, its fingerprint, and the checks on device keys."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from Crypto.PublicKey import RSA

from pushd.crypto import BadDeviceKey, ExchangeFailed, KeyStoreError
from pushd.crypto.keys import (
    SERVER_KEY_FILE,
    fingerprint,
    import_device_key,
    load_or_create_server_key,
    load_server_key,
    spki_der,
)
from pushd.crypto.transports import ZKX1Transport, ZKX1TransportFactory

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory (not yet existing) whose key is generated once for the module."""
    directory = tmp_path_factory.mktemp("keys") / "data"
    load_or_create_server_key(str(directory))
    return directory


@pytest.fixture(scope="module")
def server_key(key_dir: Path) -> RSA.RsaKey:
    return load_server_key(str(key_dir / SERVER_KEY_FILE))


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def test_generated_key_is_rsa_3072_with_e_65537(server_key: RSA.RsaKey) -> None:
    assert server_key.has_private()
    assert (server_key.size_in_bits(), server_key.e) == (3072, 65537)


@posix_only
def test_key_file_is_0600_in_a_0700_directory_with_no_temporary_left(key_dir: Path) -> None:
    assert stat.S_IMODE((key_dir / SERVER_KEY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    assert os.listdir(key_dir) == [SERVER_KEY_FILE]


def test_key_is_generated_once_and_reloaded(key_dir: Path, server_key: RSA.RsaKey) -> None:
    before = (key_dir / SERVER_KEY_FILE).read_bytes()
    again = load_or_create_server_key(str(key_dir))
    assert (key_dir / SERVER_KEY_FILE).read_bytes() == before
    assert fingerprint(again) == fingerprint(server_key)


def test_fingerprint_is_sha256_of_the_der_spki_in_hex(server_key: RSA.RsaKey) -> None:
    der = server_key.public_key().export_key(format="DER")
    assert der[:1] == b"\x30" and spki_der(server_key) == der
    assert fingerprint(server_key) == hashlib.sha256(der).hexdigest()
    assert fingerprint(der) == fingerprint(server_key.public_key())
    assert len(fingerprint(server_key)) == 64


def test_the_factory_builds_a_transport_from_the_data_dir(
    key_dir: Path, server_key: RSA.RsaKey
) -> None:
    transport = ZKX1TransportFactory().build(str(key_dir))
    assert isinstance(transport, ZKX1Transport)
    assert transport.fingerprint == fingerprint(server_key)


@posix_only
def test_a_key_readable_by_others_is_refused(tmp_path: Path, server_key: RSA.RsaKey) -> None:
    path = tmp_path / SERVER_KEY_FILE
    _write(path, server_key.export_key(format="PEM", pkcs=8), 0o644)
    with pytest.raises(KeyStoreError) as failure:
        load_or_create_server_key(str(tmp_path))
    assert "chmod 600" in failure.value.detail
    assert failure.value.status == 500


def test_a_passphrase_protected_key_loads_with_its_passphrase(
    tmp_path: Path, server_key: RSA.RsaKey
) -> None:
    path = tmp_path / SERVER_KEY_FILE
    pem = server_key.export_key(
        format="PEM", pkcs=8, passphrase="s3cret", protection="scryptAndAES128-CBC"
    )
    _write(path, pem)
    loaded = load_or_create_server_key(str(tmp_path), passphrase="s3cret")
    assert fingerprint(loaded) == fingerprint(server_key)
    with pytest.raises(KeyStoreError):
        load_server_key(str(path), passphrase="wrong")


@pytest.mark.parametrize(
    "content",
    [b"", b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
)
def test_an_unreadable_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    _write(tmp_path / SERVER_KEY_FILE, content)
    with pytest.raises(KeyStoreError):
        load_or_create_server_key(str(tmp_path))


def test_a_public_or_small_server_key_is_refused(tmp_path: Path, server_key: RSA.RsaKey) -> None:
    path = tmp_path / SERVER_KEY_FILE
    _write(path, server_key.public_key().export_key(format="PEM"))
    with pytest.raises(KeyStoreError):
        load_server_key(str(path))
    _write(path, RSA.generate(2048).export_key(format="PEM"))
    with pytest.raises(KeyStoreError):
        load_server_key(str(path))


def test_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError):
        load_server_key(str(tmp_path / "nope.pem"))


# -- device keys --------------------------------------------------------------------


@pytest.fixture(scope="module")
def device_key() -> RSA.RsaKey:
    return RSA.generate(2048)


def test_an_rsa_2048_device_key_is_accepted(device_key: RSA.RsaKey) -> None:
    key = import_device_key(spki_der(device_key))
    assert key.n == device_key.n and not key.has_private()


def test_small_device_keys_are_refused() -> None:
    for bits in (1024, 1536):
        with pytest.raises(BadDeviceKey) as failure:
            import_device_key(spki_der(RSA.generate(bits)))
        assert str(bits) in failure.value.detail
        assert isinstance(failure.value, ExchangeFailed)


def test_a_device_key_with_another_exponent_is_refused() -> None:
    with pytest.raises(BadDeviceKey) as failure:
        import_device_key(spki_der(RSA.generate(2048, e=3)))
    assert "exponent" in failure.value.detail


def test_device_keys_in_other_encodings_are_refused(device_key: RSA.RsaKey) -> None:
    public = device_key.public_key()
    for encoding in (
        public.export_key(format="PEM"),  # SPKI, but PEM
        public.export_key(format="OpenSSH"),
        device_key.export_key(format="DER"),  # the private key
        spki_der(device_key)[:-1],
        spki_der(device_key) + b"\x00",
        b"\x30\x03\x02\x01\x01",
        b"",
    ):
        with pytest.raises(BadDeviceKey):
            import_device_key(encoding)
