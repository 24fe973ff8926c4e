# -*- test-case-name: tests.test_protocol_devicecmd -*-
"""
Command replies (spec 13): ``POST /iclock/devicecmd`` bodies.

Each result starts with an ``ID=`` line.  The usual form is one line of
``&``-joined pairs (``ID=287&Return=0&CMD=DATA``), several per body; an INFO
result is followed by ``key=value`` lines (12.4.3); a GetFile result (12.5.1)
puts ``ID=``, ``SN=``, ``FILENAME=``, ``CMD=``, ``Return=`` on lines of their
own and ends with ``Content=`` and the file's bytes.  Bodies are bytes
(``application/octet-stream``): file contents are kept exactly.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from pushd.errors import ProtocolError
from pushd.protocol.records import CommandReply

__all__ = ["parse_devicecmd"]


def _pairs(line: bytes) -> List[Tuple[str, str]]:
    pairs = []
    for part in line.split(b"&"):
        key, _, value = part.partition(b"=")
        pairs.append((key.decode("utf-8", "replace").strip(), value.decode("utf-8", "replace")))
    return pairs


def _line_pair(line: bytes) -> Tuple[str, str]:
    key, _, value = line.partition(b"=")
    return key.decode("utf-8", "replace").strip(), value.decode("utf-8", "replace")


class _Reply:
    def __init__(self, params: List[Tuple[str, str]], start: int, single: bool) -> None:
        self.params = params
        # After a one-line result, further lines are its payload (INFO);
        # in the multi-line form (GetFile) they are more of its pairs.
        self.lines: List[Tuple[str, str]] = []
        self.more = self.lines if single else params
        self.content: Optional[bytes] = None
        self.start = start

    def value(self, name: str) -> str:
        for key, value in self.params:
            if key.lower() == name.lower():
                return value
        for key, value in self.lines:
            if key.lower() == name.lower():
                return value
        return ""

    def build(self, body: bytes, end: int) -> CommandReply:
        return CommandReply(
            cmd_id=self.value("ID"),
            return_code=self.value("Return").strip(),
            cmd=self.value("CMD").strip(),
            params=tuple(self.params),
            lines=tuple(self.lines),
            content=self.content,
            raw=body[self.start : end],
        )


def parse_devicecmd(body: bytes) -> List[CommandReply]:
    """
    Parse every command result in a devicecmd body.

    :raises ProtocolError: when the body holds no ``ID=`` result.
    """
    replies: List[CommandReply] = []
    current: Optional[_Reply] = None
    pos = 0
    while pos < len(body):
        newline = body.find(b"\n", pos)
        end = len(body) if newline < 0 else newline
        line = body[pos:end].rstrip(b"\r")
        line_start, pos = pos, end + 1
        if not line.strip():
            continue
        if line.startswith(b"ID="):
            if current is not None:
                replies.append(current.build(body, line_start))
            single = b"&" in line
            params = _pairs(line) if single else [_line_pair(line)]
            current = _Reply(params, line_start, single)
            continue
        if current is None:
            raise ProtocolError("command reply does not start with ID=")
        if line.startswith(b"Content="):
            content_start = line_start + len(b"Content=")
            # GetFile's Return is the file size; SHELL's content runs to the end.
            is_file = current.value("CMD").strip().lower() == "getfile"
            size = _as_size(current.value("Return")) if is_file else None
            if size is not None and content_start + size <= len(body):
                current.content = body[content_start : content_start + size]
                pos = content_start + size
            else:
                current.content = body[content_start:]
                pos = len(body)
            continue
        current.more.append(_line_pair(line))
    if current is None:
        raise ProtocolError("command reply body holds no ID= result")
    replies.append(current.build(body, len(body)))
    return replies


def _as_size(value: str) -> Optional[int]:
    try:
        size = int(value.strip())
    except ValueError:
        return None
    return size if size >= 0 else None
