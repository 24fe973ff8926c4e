"""
Loading captured requests: ``tests/vectors/real/*.txt`` (from real terminals)
and ``tests/vectors/spec/*.txt`` (the spec's own examples, TABs restored).

Layout of a file: ``# `` annotation lines, a ``# ---`` line, the request
line, header lines, one empty line, then the body bytes to the end of file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Tuple
from urllib.parse import parse_qs, urlsplit

HERE = os.path.join(os.path.dirname(__file__), "vectors")


@dataclass(frozen=True)
class Vector:
    name: str
    method: bytes
    target: bytes
    headers: Tuple[Tuple[bytes, bytes], ...]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target.decode()).path

    @property
    def args(self) -> Dict[bytes, List[bytes]]:
        query = urlsplit(self.target.decode()).query
        parsed = parse_qs(query, keep_blank_values=True)
        return {k.encode(): [v.encode() for v in vs] for k, vs in parsed.items()}

    def param(self, name: str) -> str:
        for key, values in self.args.items():
            if key.decode().lower() == name.lower():
                return values[0].decode()
        return ""


def load(path: str) -> Vector:
    with open(path, "rb") as handle:
        data = handle.read()
    _, _, request = data.partition(b"# ---\n")
    head, _, body = request.partition(b"\n\n")
    lines = head.split(b"\n")
    method, target, _ = lines[0].split(b" ", 2)
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name:
            headers.append((name.strip(), value.strip()))
    return Vector(os.path.basename(path), method, target, tuple(headers), body)


def all_vectors(kind: str) -> List[Vector]:
    folder = os.path.join(HERE, kind)
    return [load(os.path.join(folder, n)) for n in sorted(os.listdir(folder)) if n.endswith(".txt")]


def vector(name_prefix: str, kind: str = "real") -> Vector:
    for v in all_vectors(kind):
        if v.name.startswith(name_prefix):
            return v
    raise KeyError(name_prefix)
