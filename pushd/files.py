# -*- test-case-name: tests.test_commands -*-
"""
Files pushd hands to devices: firmware for UPGRADE (spec 12.8.2) and the
data packs of PutFile (spec 12.5.2), all under ``<data-dir>/files/``.

Only files under that directory are ever served; a request's path is
normalised and checked against it (no ``..``, no absolute paths, no hidden
names, no links out).  Packs get unguessable names, since a device fetches
them without saying who it is.  Everything here blocks (hashing, archiving,
reading): callers run it in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import posixpath
import secrets
import tarfile
import tempfile
from typing import Optional, Tuple
from urllib.parse import urlsplit

__all__ = ["BASE64_PREFIX", "FileArea"]

#: URLs under this prefix serve the file as base64 (UPGRADE method 1).
BASE64_PREFIX = "b64/"


class FileArea:
    """The ``files/`` directory of the data directory."""

    def __init__(self, data_dir: str) -> None:
        self.root = os.path.realpath(os.path.join(data_dir, "files"))

    @staticmethod
    def relative(url: str) -> str:
        """
        The path under ``files/`` that a device's ``url`` names: a full URL,
        ``/iclock/file/...``, ``file/...`` or a bare relative path.
        """
        path = urlsplit(url).path if "://" in url else url.split("?", 1)[0]
        path = path.lstrip("/")
        for prefix in ("iclock/", "file/"):
            if path.startswith(prefix):
                path = path[len(prefix) :]
        return path

    def resolve(self, relative: str) -> Optional[str]:
        """The file ``relative`` names inside the area, or ``None`` if it is not one."""
        clean = posixpath.normpath(relative)
        parts = clean.split("/")
        if not relative or clean.startswith(("/", "..")) or any(p.startswith(".") for p in parts):
            return None
        if "\x00" in clean:  # no file name holds NUL (and CPython's realpath refuses it)
            return None
        path = os.path.realpath(os.path.join(self.root, *parts))
        if not path.startswith(self.root + os.sep) or not os.path.isfile(path):
            return None
        return path

    def read(self, url: str) -> Optional[bytes]:
        """The bytes to send for ``url`` (base64 under ``b64/``), or ``None``."""
        relative = self.relative(url)
        encode = relative.startswith(BASE64_PREFIX)
        path = self.resolve(relative[len(BASE64_PREFIX) :] if encode else relative)
        if path is None:
            return None
        with open(path, "rb") as handle:
            data = handle.read()
        return base64.b64encode(data) if encode else data

    def describe(self, relative: str) -> Tuple[str, int]:
        """
        ``(md5 hex, size)`` of a file of the area.

        :raises FileNotFoundError: it is not a file of the area.
        """
        path = self.resolve(relative)
        if path is None:
            raise FileNotFoundError(relative)
        digest = hashlib.md5(usedforsecurity=False) if _MD5_FLAG else hashlib.md5()
        size = 0
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 16), b""):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size

    def write_pack(self, member: str, content: bytes) -> str:
        """
        Write a gzip tar of one member under ``packs/`` with a random name.

        :returns: its path relative to the area.
        """
        folder = os.path.join(self.root, "packs")
        os.makedirs(folder, exist_ok=True)
        name = f"{secrets.token_hex(16)}.tgz"
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            info = tarfile.TarInfo(member)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".incoming-")
        with os.fdopen(handle, "wb") as out:
            out.write(buffer.getvalue())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, os.path.join(folder, name))
        return f"packs/{name}"


try:  # Python 3.9+: md5 as a checksum, not for security (FIPS builds need the flag)
    hashlib.md5(usedforsecurity=False)
    _MD5_FLAG = True
except TypeError:  # pragma: no cover
    _MD5_FLAG = False
