# -*- test-case-name: tests.test_protocol_cdata -*-
"""
Value objects for everything a device sends.

Pure: no Twisted imports.  Every parser in :mod:`pushd.protocol` returns these
frozen dataclasses; the store persists them and the API reads them back.

Text fields are ``str`` decoded with the device's codec.  Where a line held
bytes that did not decode, the record carries the original line in ``raw`` so
nothing the device sent is lost.  Keyed records (``USER PIN=..<TAB>Name=..``)
keep every ``key=value`` pair in order in ``fields`` (payload fields such as
``TMP`` or ``Content`` excepted: those are held once, in their own attribute).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple, Union

Fields = Tuple[Tuple[str, str], ...]

__all__ = [
    "AccessEvent",
    "AttLog",
    "AttPhoto",
    "BioPhoto",
    "BioTemplate",
    "CommandReply",
    "DeviceInfo",
    "DoorState",
    "ErrorLog",
    "FaceTemplate",
    "Fields",
    "FingerTemplate",
    "Handshake",
    "IdCard",
    "OpLog",
    "OtherRecord",
    "Record",
    "Rejected",
    "UserInfo",
    "UserPhoto",
    "VeinTemplate",
    "WorkCode",
]


@dataclass(frozen=True)
class AttLog:
    """One attendance punch (spec 11.2, 11.7).

    ``time`` is normalised to ``YYYY-MM-DDTHH:MM:SS`` (device-local time).
    ``extra`` holds every field after the fifth, in order, as sent (reserved
    fields, ID number and record type of 11.7, mask flag, temperature,
    record index...).
    """

    pin: str
    time: str
    status: str
    verify: str
    workcode: str
    extra: Tuple[str, ...] = ()
    raw: Optional[bytes] = None


@dataclass(frozen=True)
class OpLog:
    """One operation-log entry (spec 11.4): ``OPLOG type<TAB>who<TAB>time<TAB>v1..``."""

    op_type: str
    op_who: str
    time: str
    values: Tuple[str, ...] = ()
    raw: Optional[bytes] = None


@dataclass(frozen=True)
class UserInfo:
    """A user record (spec 11.5, and DATA UPDATE USERINFO of 12.1.1.1)."""

    pin: str
    name: str = ""
    privilege: str = ""
    password: str = ""
    card: str = ""
    group: str = ""
    tz: str = ""
    verify: str = ""
    vice_card: str = ""
    fields: Fields = ()
    raw: Optional[bytes] = None


@dataclass(frozen=True)
class FingerTemplate:
    """A classic fingerprint template (spec 11.9).  ``template`` is the base64 text."""

    pin: str
    fid: str
    size: str
    valid: str
    template: str
    size_ok: bool
    fields: Fields = ()
    raw: Optional[bytes] = None


@dataclass(frozen=True)
class FaceTemplate:
    """A classic face template (spec 11.10).  ``template`` is the base64 text."""

    pin: str
    fid: str
    size: str
    valid: str
    template: str
    size_ok: bool
    fields: Fields = ()
    raw: Optional[bytes] = None


@dataclass(frozen=True)
class VeinTemplate:
    """A finger-vein template (spec 11.11).  ``template`` is the base64 text."""

    pin: str
    fid: str
    index: str
    size: str
    valid: str
    template: str
    size_ok: bool
    fields: Fields = ()
    raw: Optional[bytes] = None


@dataclass(frozen=True)
class BioTemplate:
    """A unified template (spec 11.12), keyed by (pin, type, no, index)."""

    pin: str
    no: str
    index: str
    valid: str
    duress: str
    type: str
    major_ver: str
    minor_ver: str
    format: str
    template: str
    size_ok: bool
    fields: Fields = ()
    raw: Optional[bytes] = None


@dataclass(frozen=True)
class UserPhoto:
    """A user photo (spec 11.13).  ``content`` is the base64 text of the JPEG."""

    pin: str
    file_name: str
    size: str
    content: str
    size_ok: bool
    fields: Fields = ()
    raw: Optional[bytes] = None


@dataclass(frozen=True)
class BioPhoto:
    """A comparison photo (spec 11.15).  ``content`` is the base64 text of the JPEG."""

    pin: str
    file_name: str
    type: str
    no: str
    index: str
    size: str
    content: str
    size_ok: bool
    fields: Fields = ()
    raw: Optional[bytes] = None


@dataclass(frozen=True)
class IdCard:
    """Identity-card information (spec 11.6); every field is kept in ``fields``."""

    pin: str
    id_num: str
    sn_num: str
    name: str
    fields: Fields = ()
    raw: Optional[bytes] = None


@dataclass(frozen=True)
class ErrorLog:
    """An error-log entry (spec 11.16)."""

    err_code: str
    err_msg: str
    data_origin: str
    cmd_id: str
    additional: str
    fields: Fields = ()
    raw: Optional[bytes] = None


@dataclass(frozen=True)
class WorkCode:
    """A work code (the upload twin of 12.1.1.12): ``WORKCODE PIN=..<TAB>CODE=..<TAB>NAME=..``."""

    pin: str
    code: str
    name: str
    fields: Fields = ()
    raw: Optional[bytes] = None


@dataclass(frozen=True)
class AccessEvent:
    """
    A real-time event of a PUSH 3.x access terminal (``table=rtlog``): door,
    alarm, device and verification events.  Verifications of a person that
    open the door also become :class:`AttLog` punches.

    ``event`` is the App. 2/19 code and ``event_name`` its meaning; ``door``
    is ``eventaddr``; ``index`` the device's record id (empty when absent).
    """

    time: str
    pin: str
    card: str
    door: str
    event: str
    event_name: str
    inout: str
    verify: str
    index: str
    fields: Fields = ()
    raw: Optional[bytes] = None


@dataclass(frozen=True)
class DoorState:
    """A door and alarm state report of a 3.x access terminal (``table=rtstate``)."""

    time: str
    sensor: str
    relay: str
    alarm: str
    door: str
    fields: Fields = ()
    raw: Optional[bytes] = None


@dataclass(frozen=True)
class OtherRecord:
    """A well-formed keyed record of a kind pushd does not model (kept, not dropped)."""

    kind: str
    fields: Fields = ()
    raw: Optional[bytes] = None


@dataclass(frozen=True)
class AttPhoto:
    """Metadata of an attendance photo (spec 11.3, 11.8).

    ``name`` is the device's ``PIN=`` header (a file name such as
    ``20160615093758-0-1457-210218199011304365.jpg``); ``time``, ``photo_type``,
    ``pin`` and ``id_num`` are parsed from it where present.  ``path`` is the
    server-built path relative to the data directory, set once the image has
    been written.
    """

    name: str
    time: str
    photo_type: str
    pin: str
    id_num: str
    size: str
    stored_size: int
    sha256: str
    path: str = ""
    headers: Fields = ()


@dataclass(frozen=True)
class Rejected:
    """A line that could not be understood, quarantined with the reason and its table."""

    table: str
    line: bytes
    reason: str


Record = Union[
    AttLog,
    OpLog,
    UserInfo,
    FingerTemplate,
    FaceTemplate,
    VeinTemplate,
    BioTemplate,
    UserPhoto,
    BioPhoto,
    IdCard,
    ErrorLog,
    WorkCode,
    OtherRecord,
    AttPhoto,
    Rejected,
    AccessEvent,
    DoorState,
]


@dataclass(frozen=True)
class Handshake:
    """The parameters of ``GET /iclock/cdata?options=all`` (spec 5)."""

    sn: str
    push_version: str = ""
    language: str = ""
    pushcommkey: str = ""
    device_type: str = ""
    push_options_flag: str = ""


@dataclass(frozen=True)
class DeviceInfo:
    """The ``INFO=`` list of a getrequest poll (spec 9): 10 fields, 13 on some firmware."""

    firmware: str
    user_count: str = ""
    fp_count: str = ""
    att_count: str = ""
    ip: str = ""
    fp_version: str = ""
    face_version: str = ""
    face_enroll_count: str = ""
    face_count: str = ""
    functions: str = ""
    extra: Tuple[str, ...] = ()


@dataclass(frozen=True)
class CommandReply:
    """One command result from ``POST /iclock/devicecmd`` (spec 13).

    ``params`` holds every ``key=value`` of the result (``ID``, ``Return``,
    ``CMD`` included, in order); ``lines`` the ``key=value`` lines that follow
    an INFO or similar reply; ``content`` the binary payload of a GetFile or
    SHELL reply.
    """

    cmd_id: str
    return_code: str
    cmd: str
    params: Fields = ()
    lines: Fields = ()
    content: Optional[bytes] = None
    raw: Optional[bytes] = field(default=None, repr=False)
