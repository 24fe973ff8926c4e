# -*- test-case-name: tests.test_protocol_packs -*-
"""
Data packets (spec 11.14): ``ContentType=tgz`` bodies are gzip tar archives
of record text in the formats of the other uploads.

Reading is bounded: member count, total uncompressed size and compression
ratio are capped, the archive is read from memory, and member names are
never used for anything but ordering.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from dataclasses import dataclass
from typing import List

from pushd.errors import ProtocolError

__all__ = ["PackLimits", "read_pack"]


@dataclass(frozen=True)
class PackLimits:
    """Caps on one archive."""

    max_members: int = 1000
    max_total: int = 64 * 1024 * 1024
    max_ratio: int = 200


def read_pack(data: bytes, limits: PackLimits = PackLimits()) -> bytes:
    """
    Concatenate the regular files of a gzip tar archive, in archive order,
    each ending with a line break.

    :raises ProtocolError: for a damaged archive or one over a limit.
    """
    budget = min(limits.max_total, max(len(data), 1) * limits.max_ratio)
    chunks: List[bytes] = []
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for count, member in enumerate(archive, start=1):
                if count > limits.max_members:
                    raise ProtocolError(f"data pack holds more than {limits.max_members} members")
                if not member.isfile():
                    continue
                total += member.size
                if total > budget:
                    raise ProtocolError("data pack expands beyond its size limit")
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                content = handle.read(member.size + 1)
                if len(content) != member.size:
                    raise ProtocolError("data pack member does not match its header size")
                chunks.append(content if content.endswith(b"\n") else content + b"\n")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ProtocolError(f"damaged data pack: {exc}") from None
    return b"".join(chunks)
