# -*- test-case-name: tests.test_protocol_cdata -*-
"""
Parsing ``POST /iclock/cdata`` bodies (spec 8, 11) into records.

Two line shapes exist.  ATTLOG lines are positional (``PIN<TAB>time<TAB>...``);
every other table sends keyed lines (``KIND key=value<TAB>key=value...``), and
OPERLOG mixes kinds in one body (OPLOG, USER, FP, FACE, FVEIN, USERPIC,
BIOPHOTO, and BIODATA/IDCARD/ERRORLOG/WORKCODE on some firmware).

Real firmware is lenient and so are we: LF or CRLF, trailing TABs, empty
fields, 40 kB lines, non-numeric values where numbers are expected and PINs
containing spaces are all kept.  A line that cannot be understood becomes a
:class:`~pushd.protocol.records.Rejected` record (quarantined, never silently
dropped); a body with nothing but such lines raises :class:`ProtocolError`.

Where a line holds no TAB at all, fields are split on white space instead:
that is how the spec's own examples read, and no real firmware sends it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import replace
from datetime import datetime
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Type, TypeVar

from pushd.errors import ProtocolError
from pushd.protocol.records import (
    AttLog,
    BioPhoto,
    BioTemplate,
    ErrorLog,
    FaceTemplate,
    Fields,
    FingerTemplate,
    IdCard,
    OpLog,
    OtherRecord,
    Record,
    Rejected,
    UserInfo,
    UserPhoto,
    VeinTemplate,
    WorkCode,
)
from pushd.protocol.text import decode

__all__ = [
    "parse_attlog",
    "parse_keyed",
    "parse_options",
    "parse_table",
    "parse_time",
    "split_lines",
]

_Classic = TypeVar("_Classic", FingerTemplate, FaceTemplate)

_TIME = re.compile(
    rb"\A\s*(\d{4})-(\d{1,2})-(\d{1,2})[ T]+(\d{1,2}):\s?(\d{1,2}):\s?(\d{1,2})\s*\Z"
)
# In a TAB-less (spec example) keyed line, a field starts where "Key=" starts.
_KEY_START = re.compile(rb"\s+(?=[A-Za-z~][A-Za-z0-9_~]*=)")
_KIND = re.compile(rb"\A[A-Za-z_][A-Za-z0-9_]*\Z")
# A 3.x record's optional table-name prefix: a word, then SP or TAB.
_LEADING_WORD = re.compile(rb"\A([A-Za-z_][A-Za-z0-9_]*)[ \t]")
# In the options list, a comma separates two pairs only when a key follows.
_OPTION_SPLIT = re.compile(r",(?=[~A-Za-z0-9_]+=)")


def split_lines(body: bytes) -> List[bytes]:
    """Split a body on LF, dropping CR line ends and blank lines."""
    lines = []
    for line in body.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.strip():
            lines.append(line)
    return lines


def parse_time(value: bytes) -> str:
    """
    Parse a device time (``2015-07-29 11:11:11``) into ``2015-07-29T11:11:11``.

    :raises ValueError: when it is not a valid date and time.
    """
    match = _TIME.match(value)
    if match is None:
        raise ValueError("not a date and time")
    year, month, day, hour, minute, second = (int(g) for g in match.groups())
    return datetime(year, month, day, hour, minute, second).isoformat()


# -- ATTLOG ---------------------------------------------------------------


def _attlog_fields(line: str) -> List[str]:
    if "\t" in line:
        fields = line.split("\t")
    else:
        words = line.split()
        if len(words) < 3:
            return words
        fields = [words[0], words[1] + " " + words[2], *words[3:]]
    while len(fields) > 5 and not fields[-1].strip():
        fields.pop()
    return fields


def _punch_time(value: str) -> str:
    """:func:`parse_time` for text, with a fast path for the usual ``YYYY-MM-DD hh:mm:ss``."""
    if (
        len(value) == 19
        and value[4] == "-"
        and value[7] == "-"
        and value[10] in " T"
        and value[13] == ":"
        and value[16] == ":"
    ):
        try:
            datetime(
                int(value[:4]),
                int(value[5:7]),
                int(value[8:10]),
                int(value[11:13]),
                int(value[14:16]),
                int(value[17:]),
            )
        except ValueError:
            pass
        else:
            if value[:4].isdigit() and value[11:13].isdigit():
                return value[:10] + "T" + value[11:]
    return parse_time(value.encode("utf-8"))


def _attlog(line: bytes, codec: str) -> Record:
    text, lossy = decode(line, codec)
    fields = _attlog_fields(text)
    if len(fields) < 2:
        return Rejected("ATTLOG", line, "fewer than two fields")
    try:
        when = _punch_time(fields[1])
    except ValueError:
        return Rejected("ATTLOG", line, "invalid time")
    head = [field.strip() for field in fields[:1] + fields[2:5]]
    head += [""] * (4 - len(head))
    if not head[0]:
        return Rejected("ATTLOG", line, "empty PIN")
    return AttLog(
        pin=head[0],
        time=when,
        status=head[1],
        verify=head[2],
        workcode=head[3],
        extra=tuple(fields[5:]),
        raw=line if lossy else None,
    )


def parse_attlog(body: bytes, codec: str = "utf-8") -> List[Record]:
    """Parse an ATTLOG body (spec 11.2 7 fields, 11.7 9 fields, and the 10 of real firmware)."""
    return _require([_attlog(line, codec) for line in split_lines(body)], "ATTLOG")


# -- keyed lines ----------------------------------------------------------


class _Keyed:
    """The ``key=value`` pairs of one keyed line, looked up case-insensitively."""

    __slots__ = ("_index", "kind", "lossy", "pairs")

    def __init__(self, kind: str, pairs: List[Tuple[str, str]], lossy: bool) -> None:
        self.kind = kind
        self.pairs = pairs
        self.lossy = lossy
        self._index: Dict[str, str] = {}
        for key, value in pairs:
            self._index.setdefault(key.lower(), value)

    def get(self, *names: str) -> str:
        for name in names:
            value = self._index.get(name.lower())
            if value is not None:
                return value
        return ""

    def fields(self, *payload: str) -> Fields:
        """Every pair in order, without the payload keys (kept in their own attribute)."""
        skip = {name.lower() for name in payload}
        return tuple((k, v) for k, v in self.pairs if k.lower() not in skip)


def _split_keyed(line: bytes, codec: str, bare: bool = False) -> Optional[_Keyed]:
    """
    Split ``KIND key=value<TAB>key=value...`` into its kind and pairs.

    With ``bare`` (PUSH 3.x uploads), the kind is optional: a leading word
    without ``=`` followed by a SP or TAB is the kind, else the kind is ``""``
    and the whole line is pairs (``time=..<TAB>pin=..``).
    """
    if bare:
        match = _LEADING_WORD.match(line)
        head, rest = (match.group(1), line[match.end() :]) if match else (b"", line)
    else:
        head, _, rest = line.partition(b" ")
        if not _KIND.match(head):
            return None
    parts = rest.split(b"\t") if b"\t" in rest else _KEY_START.split(rest.strip())
    pairs = []
    lossy = False
    for part in parts:
        if not part.strip():
            continue
        key, eq, value = part.partition(b"=")
        key = key.strip()
        if not eq or not key:
            return None
        text, bad = decode(value, codec)
        lossy = lossy or bad
        pairs.append((key.decode("ascii", "replace"), text))
    return _Keyed(head.decode("ascii"), pairs, lossy)


def _payload(text: str, size: str) -> bool:
    """Whether a base64 payload decodes and matches ``Size`` (base64 or binary length)."""
    compact = "".join(text.split())
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return False
    if not size.strip():
        return bool(compact)
    try:
        expected = int(size)
    except ValueError:
        return False
    return expected in (len(compact), len(data))


def _oplog(line: bytes, codec: str) -> Record:
    rest = line.partition(b" ")[2]
    if b"\t" in rest:
        fields = rest.split(b"\t")
    else:
        words = rest.split()
        fields = [*words[:2], b" ".join(words[2:4]), *words[4:]] if len(words) >= 4 else words
    if len(fields) < 3:
        return Rejected("OPERLOG", line, "OPLOG with fewer than three fields")
    try:
        when = parse_time(fields[2])
    except ValueError:
        return Rejected("OPERLOG", line, "OPLOG with an invalid time")
    while len(fields) > 3 and not fields[-1].strip():
        fields.pop()
    texts = []
    lossy = False
    for value in fields[:2] + fields[3:]:
        text, bad = decode(value.strip(), codec)
        texts.append(text)
        lossy = lossy or bad
    return OpLog(
        op_type=texts[0],
        op_who=texts[1],
        time=when,
        values=tuple(texts[2:]),
        raw=line if lossy else None,
    )


def _user(rec: _Keyed) -> UserInfo:
    return UserInfo(
        pin=rec.get("PIN"),
        name=rec.get("Name"),
        privilege=rec.get("Pri", "Privilege"),
        password=rec.get("Passwd", "Password"),
        card=rec.get("Card", "CardNo"),
        group=rec.get("Grp", "Group"),
        tz=rec.get("TZ"),
        verify=rec.get("Verify"),
        vice_card=rec.get("ViceCard"),
        fields=rec.fields(),
    )


def _classic(kind: Type[_Classic]) -> Callable[[_Keyed], _Classic]:
    """A builder of classic fingerprint (11.9) or face (11.10) templates: same keys."""

    def build(rec: _Keyed) -> _Classic:
        tmp, size = rec.get("TMP"), rec.get("Size")
        return kind(
            pin=rec.get("PIN"),
            fid=rec.get("FID", "FingerID"),
            size=size,
            valid=rec.get("Valid"),
            template=tmp,
            size_ok=_payload(tmp, size),
            fields=rec.fields("TMP"),
        )

    return build


_finger = _classic(FingerTemplate)
_face = _classic(FaceTemplate)


def _vein(rec: _Keyed) -> VeinTemplate:
    tmp, size = rec.get("Tmp"), rec.get("Size")
    return VeinTemplate(
        pin=rec.get("Pin"),
        fid=rec.get("FID"),
        index=rec.get("Index"),
        size=size,
        valid=rec.get("Valid"),
        template=tmp,
        size_ok=_payload(tmp, size),
        fields=rec.fields("Tmp"),
    )


def _biodata(rec: _Keyed) -> BioTemplate:
    tmp = rec.get("Tmp")
    return BioTemplate(
        pin=rec.get("Pin"),
        no=rec.get("No"),
        index=rec.get("Index"),
        valid=rec.get("Valid"),
        duress=rec.get("Duress"),
        type=rec.get("Type"),
        major_ver=rec.get("MajorVer"),
        minor_ver=rec.get("MinorVer"),
        format=rec.get("Format"),
        template=tmp,
        size_ok=_payload(tmp, rec.get("Size")),
        fields=rec.fields("Tmp"),
    )


def _userpic(rec: _Keyed) -> UserPhoto:
    content, size = rec.get("Content"), rec.get("Size")
    return UserPhoto(
        pin=rec.get("PIN"),
        file_name=rec.get("FileName"),
        size=size,
        content=content,
        size_ok=_payload(content, size),
        fields=rec.fields("Content"),
    )


def _biophoto(rec: _Keyed) -> BioPhoto:
    content, size = rec.get("Content"), rec.get("Size")
    return BioPhoto(
        pin=rec.get("PIN"),
        file_name=rec.get("FileName"),
        type=rec.get("Type"),
        no=rec.get("No"),
        index=rec.get("Index"),
        size=size,
        content=content,
        size_ok=_payload(content, size),
        fields=rec.fields("Content"),
    )


def _idcard(rec: _Keyed) -> IdCard:
    return IdCard(
        pin=rec.get("PIN"),
        id_num=rec.get("IDNum"),
        sn_num=rec.get("SNNum"),
        name=rec.get("Name"),
        fields=rec.fields(),
    )


def _errorlog(rec: _Keyed) -> ErrorLog:
    return ErrorLog(
        err_code=rec.get("ErrCode"),
        err_msg=rec.get("ErrMsg"),
        data_origin=rec.get("DataOrigin"),
        cmd_id=rec.get("CmdId"),
        additional=rec.get("Additional"),
        fields=rec.fields(),
    )


def _workcode(rec: _Keyed) -> WorkCode:
    return WorkCode(
        pin=rec.get("PIN"), code=rec.get("CODE"), name=rec.get("NAME"), fields=rec.fields()
    )


_BUILDERS: Dict[str, Callable[[_Keyed], Record]] = {
    "USER": _user,
    "USERINFO": _user,
    "FP": _finger,
    "FINGERTMP": _finger,
    "FACE": _face,
    "FVEIN": _vein,
    "BIODATA": _biodata,
    "USERPIC": _userpic,
    "BIOPHOTO": _biophoto,
    "IDCARD": _idcard,
    "ERRORLOG": _errorlog,
    "WORKCODE": _workcode,
}

# Records that are meaningless without a PIN.
_NEEDS_PIN = {"USER", "USERINFO", "FP", "FINGERTMP", "FACE", "FVEIN", "BIODATA", "USERPIC"}


def _keyed_record(line: bytes, table: str, codec: str) -> Record:
    if line[:6].upper() == b"OPLOG ":
        return _oplog(line, codec)
    rec = _split_keyed(line, codec)
    if rec is None:
        return Rejected(table, line, "not a keyed record line")
    kind = rec.kind.upper()
    builder = _BUILDERS.get(kind)
    if builder is None:
        return OtherRecord(rec.kind, tuple(rec.pairs), raw=line if rec.lossy else None)
    record = builder(rec)
    if kind in _NEEDS_PIN and not getattr(record, "pin", "x").strip():
        return Rejected(table, line, f"{rec.kind} record without PIN")
    if rec.lossy:
        record = _with_raw(record, line)
    return record


def _with_raw(record: Record, line: bytes) -> Record:
    return replace(record, raw=line)  # type: ignore[arg-type]


def parse_keyed(body: bytes, table: str, codec: str = "utf-8") -> List[Record]:
    """Parse a body of keyed lines (OPERLOG, BIODATA, IDCARD, ERRORLOG, ...)."""
    return _require([_keyed_record(line, table, codec) for line in split_lines(body)], table)


def parse_table(table: str, body: bytes, codec: str = "utf-8") -> List[Record]:
    """
    Parse the body of ``POST /iclock/cdata?table=<table>`` (tables other than
    ``options`` and ``ATTPHOTO``, which are not line records).

    :returns: the records, in body order (an empty body gives an empty list).
    :raises ProtocolError: when the body holds lines and none is a record.
    """
    if table.upper() == "ATTLOG":
        return parse_attlog(body, codec)
    return parse_keyed(body, table.upper(), codec)


def _require(records: Sequence[Record], table: str) -> List[Record]:
    if records and all(isinstance(r, Rejected) for r in records):
        first = records[0]
        assert isinstance(first, Rejected)
        raise ProtocolError(f"no valid {table} record in body ({first.reason})")
    return list(records)


# -- options --------------------------------------------------------------


def parse_options(body: bytes, codec: str = "utf-8") -> Dict[str, str]:
    """
    Parse a ``table=options`` body (spec 8): ``key=value,key=value...``.

    Values may be empty and may themselves hold ``", "`` (``~OEMVendor=ZKTeco
    Co., Ltd.``) or padding spaces; they are kept exactly.  Some firmware
    separates pairs with line breaks instead of commas; both work.

    :raises ProtocolError: when no ``key=value`` pair is found.
    """
    text, _ = decode(body, codec)
    options: Dict[str, str] = {}
    for line in text.splitlines():
        for pair in _OPTION_SPLIT.split(line):
            key, eq, value = pair.partition("=")
            key = key.strip()
            if eq and key:
                options[key] = value
    if text.strip() and not options:
        raise ProtocolError("options body holds no key=value pair")
    return options
