# -*- test-case-name: tests.test_protocol_commands -*-
"""
Server commands (spec 12) and what their replies mean (spec 13, Appendix 1).

Pure: no Twisted imports.  Three ways in, one way out:

* typed builders, one per command of spec 12 (:func:`update_user`,
  :func:`query_attlog`, :func:`put_file`...), and builders from stored records
  (:func:`user_update`...) used to copy a user to other devices;
* :func:`build` for the REST API: a kind name and JSON parameters;
* :func:`validate_raw` for command text given as is.

Each returns a :class:`Built`: the text that follows ``C:<id>:``, the kind that
made it and its family (``standard``, ``shell``, ``files``, ``upgrade``), which
is what ``--allow-commands`` filters on.  :func:`format_commands` turns
``(id, text)`` pairs into a getrequest reply; :func:`interpret` reads a device's
reply (a :class:`~pushd.protocol.records.CommandReply`) into an
:class:`Outcome`.

Every value is checked before it reaches a device: nothing may smuggle a TAB,
CR, LF or NUL (or any other control character) into a field, numbers are in
range, times are real times, base64 is base64, and ``Size`` is computed here,
never taken from the caller.  Invalid input raises :class:`InvalidCommand`
with a one-line reason naming the parameter.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import inspect
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from pushd.errors import ProtocolError
from pushd.protocol.records import (
    BioPhoto,
    BioTemplate,
    CommandReply,
    FaceTemplate,
    FingerTemplate,
    UserInfo,
    UserPhoto,
    VeinTemplate,
)

__all__ = [
    "BUILDERS",
    "FAMILIES",
    "Built",
    "InvalidCommand",
    "Outcome",
    "biodata_update",
    "biophoto_update",
    "build",
    "check",
    "clear_biodata",
    "clear_data",
    "clear_log",
    "clear_photo",
    "command_id_ok",
    "delete_adpic",
    "delete_biodata",
    "delete_biophoto",
    "delete_face",
    "delete_finger_vein",
    "delete_fingerprint",
    "delete_sms",
    "delete_user",
    "delete_userpic",
    "delete_workcode",
    "enroll_bio",
    "enroll_fp",
    "enroll_mf",
    "face_update",
    "finger_update",
    "format_commands",
    "get_file",
    "info",
    "interpret",
    "log",
    "put_file",
    "query_attlog",
    "query_attphoto",
    "query_biodata",
    "query_fingerprints",
    "query_users",
    "raw",
    "reboot",
    "reload_options",
    "set_option",
    "shell",
    "unalarm",
    "unlock",
    "update_access_combination",
    "update_access_group",
    "update_access_holiday",
    "update_access_timezone",
    "update_adpic",
    "update_biodata",
    "update_biophoto",
    "update_blacklist",
    "update_face",
    "update_finger_vein",
    "update_fingerprint",
    "update_idcard",
    "update_shortcut_key",
    "update_sms",
    "update_user",
    "update_user_sms",
    "update_userpic",
    "update_workcode",
    "upgrade",
    "user_update",
    "userpic_update",
    "validate_raw",
    "vein_update",
    "verify_sum",
]

#: What ``--allow-commands`` calls the command families.
FAMILIES = ("standard", "shell", "files", "upgrade")

#: A number or a text value, as a JSON body carries it.
Value = Union[int, str]
#: A time as text (``YYYY-MM-DD HH:MM:SS``) or a naive datetime.
Time = Union[str, datetime.datetime]


class InvalidCommand(ProtocolError):
    """A command that must not reach a device: a parameter is missing, unknown or invalid."""


@dataclass(frozen=True)
class Built:
    """
    A checked command.

    ``command`` is the text sent after ``C:<id>:``; ``kind`` the builder that
    made it (``"raw"`` for text given as is); ``family`` one of
    :data:`FAMILIES`.
    """

    command: str
    kind: str
    family: str = "standard"


@dataclass(frozen=True)
class Outcome:
    """
    What a device's reply to a command means.

    ``status`` is ``"succeeded"`` or ``"failed"``; ``return_code`` the
    ``Return`` value as sent; ``meaning`` a one-line reading of it
    (``"-1002: Not supported by the equipment"``); ``data`` what the reply
    carried, JSON-ready.
    """

    status: str
    return_code: str
    meaning: str
    data: Dict[str, Any] = field(default_factory=dict)


# -- validation ------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINE_BREAKERS = re.compile(r"[\r\n\x00]")
_NAMES = {"\t": "TAB", "\r": "CR", "\n": "LF", "\x00": "NUL"}

_INTEGER = re.compile(r"\A-?[0-9]{1,18}\Z")
_PIN = re.compile(r"\A[A-Za-z0-9_.-]{1,24}\Z")
_COMMAND_ID = re.compile(r"\A[A-Za-z0-9]{1,16}\Z")
_TIME = re.compile(r"\A([0-9]{4}-[0-9]{2}-[0-9]{2})[ T]([0-9]{2}:[0-9]{2}:[0-9]{2})\Z")
_CARD = re.compile(r"\A(?:[0-9A-Za-z]{0,32}|\[[0-9A-Fa-f]{2,16}\])\Z")
_TZ = re.compile(r"\A[0-9]{1,16}\Z")
_OPTION_KEY = re.compile(r"\A~?[A-Za-z0-9_.]{1,64}\Z")
_FORMAT = re.compile(r"\A[A-Za-z0-9]{1,8}\Z")
_EXTENSION = re.compile(r"\A[A-Za-z0-9]{1,8}\Z")
_CHECKSUM = re.compile(r"\A[A-Za-z0-9]{1,64}\Z")
_ID_NUMBER = re.compile(r"\A[A-Za-z0-9]{1,32}\Z")
_DIGITS8 = re.compile(r"\A[0-9]{8}\Z")
_AUTO_TIME = re.compile(r"\A[0-9:;]*\Z")
_CLOCK = re.compile(r"\A([0-9]{1,2}):?([0-9]{2})\Z")
_MONTH_DAY = re.compile(r"\A([0-9]{1,2})-?([0-9]{2})\Z")

_MAX_INT = 2**31 - 1
_BIG = 10**18
_SMS_BYTES = 320


def _describe(char: str) -> str:
    return _NAMES.get(char, f"U+{ord(char):04X}")


def _text(name: str, value: object, allow_empty: bool = True) -> str:
    """A field value: text (or an integer, written in decimal) with no control character."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidCommand(f"{name}: must be a string")
    if isinstance(value, int) and not -_BIG < value < _BIG:
        raise InvalidCommand(f"{name}: number out of range")
    text = str(value)
    bad = _CONTROL.search(text)
    if bad is not None:
        raise InvalidCommand(f"{name}: {_describe(bad.group())} is not allowed in a value")
    if not text and not allow_empty:
        raise InvalidCommand(f"{name}: must not be empty")
    return text


def _token(name: str, value: object, pattern: re.Pattern[str], what: str) -> str:
    text = _text(name, value)
    if not pattern.match(text):
        raise InvalidCommand(f"{name}: must be {what}")
    return text


def _pin(name: str, value: object) -> str:
    return _token(name, value, _PIN, "1-24 letters, digits, '_', '-' or '.'")


def _int(name: str, value: object, low: int = 0, high: int = _MAX_INT) -> int:
    """An integer given as a JSON number or as decimal text."""
    if isinstance(value, bool):
        raise InvalidCommand(f"{name}: must be an integer, not a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INTEGER.match(value):
        number = int(value)
    else:
        raise InvalidCommand(f"{name}: must be an integer from {low} to {high}")
    if not low <= number <= high:
        raise InvalidCommand(f"{name}: must be an integer from {low} to {high}")
    return number


def _number(name: str, value: object, low: int = 0, high: int = _MAX_INT) -> str:
    return str(_int(name, value, low, high))


def _flag(name: str, value: object) -> str:
    """0 or 1; JSON booleans are accepted."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return _number(name, value, 0, 1)


def _time(name: str, value: object) -> str:
    """``YYYY-MM-DD HH:MM:SS`` (``T`` accepted as the separator), emitted with a space."""
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = _text(name, value)
    match = _TIME.match(text)
    if match is None:
        raise InvalidCommand(f"{name}: must be a time YYYY-MM-DD HH:MM:SS")
    joined = f"{match.group(1)} {match.group(2)}"
    try:
        datetime.datetime.strptime(joined, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise InvalidCommand(f"{name}: {text!r} is not a valid time") from None
    return joined


def _base64(name: str, value: object) -> str:
    """Non-empty, well-formed base64 text (with its padding)."""
    text = _text(name, value, allow_empty=False)
    try:
        base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise InvalidCommand(f"{name}: must be base64 text") from None
    return text


def _no_space(name: str, value: object) -> str:
    """A path or URL: non-empty, no whitespace."""
    text = _text(name, value, allow_empty=False)
    if any(ch.isspace() for ch in text):
        raise InvalidCommand(f"{name}: must not contain spaces")
    return text


def _card(name: str, value: object) -> str:
    return _token(name, value, _CARD, "a card number (digits/letters, or hex in [..])")


def _four_digits(value: int) -> str:
    """An integer ``HHMM``/``MMDD`` as four digits; anything else as text no pattern matches."""
    return f"{value:04d}" if 0 <= value <= 9999 and not isinstance(value, bool) else "x"


def _clock(name: str, value: object) -> str:
    """A time of day ``HHMM`` (``HH:MM`` or an integer accepted), written as a plain integer."""
    text = _four_digits(value) if isinstance(value, int) else _text(name, value)
    match = _CLOCK.match(text)
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise InvalidCommand(f"{name}: must be a time of day HHMM from 0000 to 2359")
    return str(int(match.group(1)) * 100 + int(match.group(2)))


def _month_day(name: str, value: object) -> str:
    """A date ``MMDD`` (``MM-DD`` or an integer accepted), written as a plain integer."""
    text = _four_digits(value) if isinstance(value, int) else _text(name, value)
    match = _MONTH_DAY.match(text)
    if match is None or not 1 <= int(match.group(1)) <= 12 or not 1 <= int(match.group(2)) <= 31:
        raise InvalidCommand(f"{name}: must be a date MMDD")
    return str(int(match.group(1)) * 100 + int(match.group(2)))


def _opt(check: Callable[..., str], name: str, value: object, *args: Any) -> Optional[str]:
    """``check`` the value, or None (field left out) when it was not given."""
    return None if value is None else check(name, value, *args)


Pairs = Sequence[Tuple[str, Optional[str]]]


def _record(pairs: Pairs) -> str:
    """``key=value`` pairs joined by TAB; fields whose value is None are left out."""
    return "\t".join(f"{key}={value}" for key, value in pairs if value is not None)


def _standard(kind: str, command: str) -> Built:
    return Built(command, kind, "standard")


def _update(kind: str, table: str, pairs: Pairs) -> Built:
    return _standard(kind, f"DATA UPDATE {table} {_record(pairs)}")


def _delete(kind: str, table: str, pairs: Pairs) -> Built:
    return _standard(kind, f"DATA DELETE {table} {_record(pairs)}")


def _query(kind: str, table: str, pairs: Pairs) -> Built:
    record = _record(pairs)
    return _standard(kind, f"DATA QUERY {table} {record}" if record else f"DATA QUERY {table}")


def _period(start: object, end: object) -> Tuple[str, str]:
    first, last = _time("start", start), _time("end", end)
    if first > last:
        raise InvalidCommand("end: must not be before start")
    return first, last


def _template(name: str, value: object) -> Tuple[str, str]:
    """A base64 template or photo and its ``Size``: the length of the base64 text."""
    text = _base64(name, value)
    return str(len(text)), text


# -- DATA UPDATE (12.1.1) ----------------------------------------------------


def update_user(
    pin: Value,
    name: Optional[Value] = None,
    privilege: Optional[Value] = None,
    password: Optional[Value] = None,
    card: Optional[Value] = None,
    group: Optional[Value] = None,
    tz: Optional[Value] = None,
    verify: Optional[Value] = None,
    vice_card: Optional[Value] = None,
) -> Built:
    """12.1.1.1 ``DATA UPDATE USERINFO``; fields not given are left out."""
    return _update(
        "update_user",
        "USERINFO",
        [
            ("PIN", _pin("pin", pin)),
            ("Name", _opt(_text, "name", name)),
            ("Pri", _opt(_number, "privilege", privilege, 0, 15)),
            ("Passwd", _opt(_text, "password", password)),
            ("Card", _opt(_card, "card", card)),
            ("Grp", _opt(_number, "group", group)),
            ("TZ", _opt(_token, "tz", tz, _TZ, "up to 16 digits")),
            ("Verify", _opt(_number, "verify", verify, -1, 255)),
            ("ViceCard", _opt(_card, "vice_card", vice_card)),
        ],
    )


def update_idcard(
    pin: Value,
    sn_num: Optional[Value] = None,
    id_num: Optional[Value] = None,
    dn_num: Optional[Value] = None,
    name: Optional[Value] = None,
    gender: Optional[Value] = None,
    nation: Optional[Value] = None,
    birthday: Optional[Value] = None,
    valid_info: Optional[Value] = None,
    address: Optional[Value] = None,
    additional_info: Optional[Value] = None,
    issuer: Optional[Value] = None,
    photo: Optional[str] = None,
    fp_template1: Optional[str] = None,
    fp_template2: Optional[str] = None,
    reserve: Optional[Value] = None,
    notice: Optional[Value] = None,
) -> Built:
    """12.1.1.2 ``DATA UPDATE IDCARD``; PIN 0 means an identity card bound to no user."""
    return _update(
        "update_idcard",
        "IDCARD",
        [
            ("PIN", _pin("pin", pin)),
            ("SNNum", _opt(_text, "sn_num", sn_num)),
            ("IDNum", _opt(_text, "id_num", id_num)),
            ("DNNum", _opt(_text, "dn_num", dn_num)),
            ("Name", _opt(_text, "name", name)),
            ("Gender", _opt(_number, "gender", gender, 0, 9)),
            ("Nation", _opt(_number, "nation", nation, 0, 99)),
            ("Birthday", _opt(_token, "birthday", birthday, _DIGITS8, "a date YYYYMMDD")),
            ("ValidInfo", _opt(_text, "valid_info", valid_info)),
            ("Address", _opt(_text, "address", address)),
            ("AdditionalInfo", _opt(_text, "additional_info", additional_info)),
            ("Issuer", _opt(_text, "issuer", issuer)),
            ("Photo", _opt(_base64, "photo", photo)),
            ("FPTemplate1", _opt(_base64, "fp_template1", fp_template1)),
            ("FPTemplate2", _opt(_base64, "fp_template2", fp_template2)),
            ("Reserve", _opt(_text, "reserve", reserve)),
            ("Notice", _opt(_text, "notice", notice)),
        ],
    )


def update_fingerprint(pin: Value, fid: Value, template: str, valid: Value = 1) -> Built:
    """12.1.1.3 ``DATA UPDATE FINGERTMP``: FID 0-9, Valid 0 (invalid), 1 or 3 (duress)."""
    size, tmp = _template("template", template)
    valid_text = _number("valid", valid, 0, 3)
    if valid_text == "2":
        raise InvalidCommand("valid: must be 0, 1 or 3")
    return _update(
        "update_fingerprint",
        "FINGERTMP",
        [
            ("PIN", _pin("pin", pin)),
            ("FID", _number("fid", fid, 0, 9)),
            ("Size", size),
            ("Valid", valid_text),
            ("TMP", tmp),
        ],
    )


def update_face(pin: Value, fid: Value, template: str, valid: Value = 1) -> Built:
    """12.1.1.4 ``DATA UPDATE FACE``: FID 0-11 (a classic face is 12 templates)."""
    size, tmp = _template("template", template)
    return _update(
        "update_face",
        "FACE",
        [
            ("PIN", _pin("pin", pin)),
            ("FID", _number("fid", fid, 0, 11)),
            ("Valid", _flag("valid", valid)),
            ("Size", size),
            ("TMP", tmp),
        ],
    )


def update_finger_vein(
    pin: Value, fid: Value, index: Value, template: str, valid: Value = 1
) -> Built:
    """12.1.1.5 ``DATA UPDATE FVEIN``: FID 0-9, Index 0-2."""
    size, tmp = _template("template", template)
    return _update(
        "update_finger_vein",
        "FVEIN",
        [
            ("Pin", _pin("pin", pin)),
            ("FID", _number("fid", fid, 0, 9)),
            ("Index", _number("index", index, 0, 2)),
            ("Valid", _flag("valid", valid)),
            ("Size", size),
            ("Tmp", tmp),
        ],
    )


def update_biodata(
    pin: Value,
    type: Value,
    template: str,
    major_ver: Value,
    minor_ver: Value = 0,
    no: Value = 0,
    index: Value = 0,
    valid: Value = 1,
    duress: Value = 0,
    format: Value = 0,
) -> Built:
    """
    12.1.1.6 ``DATA UPDATE BIODATA`` (unified template): Type 0-9, No and
    Index 0-255 (faces come as No 0-11), Format a number or a name (``ZK``).
    The spec's format has no ``Size`` field, so none is sent.  ``minor_ver``
    may be empty, as some firmware uploads it.
    """
    minor = "" if minor_ver == "" else _number("minor_ver", minor_ver, 0, 999)
    return _update(
        "update_biodata",
        "BIODATA",
        [
            ("Pin", _pin("pin", pin)),
            ("No", _number("no", no, 0, 255)),
            ("Index", _number("index", index, 0, 255)),
            ("Valid", _flag("valid", valid)),
            ("Duress", _flag("duress", duress)),
            ("Type", _number("type", type, 0, 9)),
            ("MajorVer", _number("major_ver", major_ver, 0, 999)),
            ("MinorVer", minor),
            ("Format", _token("format", format, _FORMAT, "a number or a name such as ZK")),
            ("Tmp", _base64("template", template)),
        ],
    )


def update_userpic(pin: Value, content: str) -> Built:
    """12.1.1.7 ``DATA UPDATE USERPIC``: the JPEG as base64."""
    size, text = _template("content", content)
    return _update(
        "update_userpic",
        "USERPIC",
        [("PIN", _pin("pin", pin)), ("Size", size), ("Content", text)],
    )


def update_biophoto(
    pin: Value,
    type: Value,
    content: Optional[str] = None,
    url: Optional[str] = None,
    post_back_tmp: Optional[Value] = None,
) -> Built:
    """
    12.1.1.8 ``DATA UPDATE BIOPHOTO``: exactly one of ``content`` (base64,
    ``Format=0``) or ``url`` (``Format=1``, ``Size=0``, empty ``Content``).
    """
    if (content is None) == (url is None):
        raise InvalidCommand("content: give either content or url, not both or neither")
    if content is not None:
        size, text = _template("content", content)
        mode, link = "0", None
    else:
        size, text, mode, link = "0", "", "1", _no_space("url", url)
    return _update(
        "update_biophoto",
        "BIOPHOTO",
        [
            ("PIN", _pin("pin", pin)),
            ("Type", _number("type", type, 0, 9)),
            ("Size", size),
            ("Content", text),
            ("Format", mode),
            ("Url", link),
            ("PostBackTmpFlag", _opt(_flag, "post_back_tmp", post_back_tmp)),
        ],
    )


def update_sms(uid: Value, message: Value, minutes: Value, start: Time, tag: Value = 253) -> Built:
    """12.1.1.9 ``DATA UPDATE SMS``: TAG 253 public, 254 personal, 255 reserved; MSG <= 320 B."""
    msg = _text("message", message, allow_empty=False)
    if len(msg.encode("utf-8")) > _SMS_BYTES:
        raise InvalidCommand(f"message: longer than {_SMS_BYTES} bytes")
    return _update(
        "update_sms",
        "SMS",
        [
            ("MSG", msg),
            ("TAG", _number("tag", tag, 253, 255)),
            ("UID", _number("uid", uid)),
            ("MIN", _number("minutes", minutes)),
            ("StartTime", _time("start", start)),
        ],
    )


def update_user_sms(pin: Value, uid: Value) -> Built:
    """12.1.1.10 ``DATA UPDATE USER_SMS``: a personal message for a user."""
    return _update(
        "update_user_sms", "USER_SMS", [("PIN", _pin("pin", pin)), ("UID", _number("uid", uid))]
    )


def update_adpic(index: Value, extension: Value, content: str) -> Built:
    """12.1.1.11 ``DATA UPDATE ADPIC``: a publicity picture; Size is the base64 length."""
    size, text = _template("content", content)
    return _update(
        "update_adpic",
        "ADPIC",
        [
            ("Index", _number("index", index)),
            ("Size", size),
            ("Extension", _token("extension", extension, _EXTENSION, "1-8 letters or digits")),
            ("Content", text),
        ],
    )


def update_workcode(pin: Value, code: Value, name: Value = "") -> Built:
    """12.1.1.12 ``DATA UPDATE WORKCODE``: ``PIN`` is the work code's index."""
    return _update(
        "update_workcode",
        "WORKCODE",
        [
            ("PIN", _pin("pin", pin)),
            ("CODE", _pin("code", code)),
            ("NAME", _text("name", name)),
        ],
    )


def update_shortcut_key(
    key_id: Value,
    key_fun: Value,
    status_code: Optional[Value] = None,
    show_name: Optional[Value] = None,
    auto_state: Optional[Value] = None,
    auto_time: Optional[Value] = None,
    sun: Optional[Value] = None,
    mon: Optional[Value] = None,
    tue: Optional[Value] = None,
    wed: Optional[Value] = None,
    thu: Optional[Value] = None,
    fri: Optional[Value] = None,
    sat: Optional[Value] = None,
) -> Built:
    """12.1.1.13 ``DATA UPDATE ShortcutKey``: KeyID 1-8 (F1-F8), KeyFun 0-6."""
    days = [("Sun", sun), ("Mon", mon), ("Tue", tue), ("Wed", wed)]
    days += [("Thu", thu), ("Fri", fri), ("Sat", sat)]
    return _update(
        "update_shortcut_key",
        "ShortcutKey",
        [
            ("KeyID", _number("key_id", key_id, 1, 8)),
            ("KeyFun", _number("key_fun", key_fun, 0, 6)),
            ("StatusCode", _opt(_number, "status_code", status_code, 0, 255)),
            ("ShowName", _opt(_text, "show_name", show_name)),
            ("AutoState", _opt(_flag, "auto_state", auto_state)),
            ("AutoTime", _opt(_token, "auto_time", auto_time, _AUTO_TIME, "HH:MM;HH:MM...")),
        ]
        + [(key, _opt(_flag, key.lower(), value)) for key, value in days],
    )


def _access_tz(value: object) -> str:
    """``TZ`` of an access group: four numbers joined by ``;`` (group flag, periods 1-3)."""
    text = _text("tz", value)
    parts = [part.strip() for part in text.split(";")]
    if len(parts) != 4 or not all(part.isdigit() and part.isascii() for part in parts):
        raise InvalidCommand("tz: must be four numbers joined by ';' (e.g. 1;1;0;0)")
    return ";".join(str(int(part)) for part in parts)


def update_access_group(
    group_id: Value, tz: Value, verify: Value = 0, valid_holiday: Value = 0
) -> Built:
    """12.1.1.14 ``DATA UPDATE AccGroup``: TZ is ``group;period1;period2;period3``."""
    return _update(
        "update_access_group",
        "AccGroup",
        [
            ("ID", _number("group_id", group_id)),
            ("Verify", _number("verify", verify, 0, 255)),
            ("ValidHoliday", _flag("valid_holiday", valid_holiday)),
            ("TZ", _access_tz(tz)),
        ],
    )


_WEEK = (
    ("sun", "Sun"),
    ("mon", "Mon"),
    ("tue", "Tues"),
    ("wed", "Wed"),
    ("thu", "Thurs"),
    ("fri", "Fri"),
    ("sat", "Sat"),
)


def update_access_timezone(
    uid: Value,
    sun_start: Value = 0,
    sun_end: Value = 0,
    mon_start: Value = 0,
    mon_end: Value = 0,
    tue_start: Value = 0,
    tue_end: Value = 0,
    wed_start: Value = 0,
    wed_end: Value = 0,
    thu_start: Value = 0,
    thu_end: Value = 0,
    fri_start: Value = 0,
    fri_end: Value = 0,
    sat_start: Value = 0,
    sat_end: Value = 0,
) -> Built:
    """
    12.1.1.15 ``DATA UPDATE AccTimeZone``: a start and end ``HHMM`` per day
    (``1159`` is 11:59), written as plain integers; days not given are 0-0.
    """
    given = {
        "sun": (sun_start, sun_end),
        "mon": (mon_start, mon_end),
        "tue": (tue_start, tue_end),
        "wed": (wed_start, wed_end),
        "thu": (thu_start, thu_end),
        "fri": (fri_start, fri_end),
        "sat": (sat_start, sat_end),
    }
    pairs: List[Tuple[str, Optional[str]]] = [("UID", _number("uid", uid))]
    for day, key in _WEEK:
        start, end = given[day]
        pairs.append((f"{key}Start", _clock(f"{day}_start", start)))
        pairs.append((f"{key}End", _clock(f"{day}_end", end)))
    return _update("update_access_timezone", "AccTimeZone", pairs)


def update_access_holiday(
    uid: Value, name: Value, start: Value, end: Value, timezone: Value
) -> Built:
    """12.1.1.16 ``DATA UPDATE AccHoliday``: dates ``MMDD`` (``1123`` is 23 November)."""
    return _update(
        "update_access_holiday",
        "AccHoliday",
        [
            ("UID", _number("uid", uid)),
            ("HolidayName", _text("name", name)),
            ("StartDate", _month_day("start", start)),
            ("EndDate", _month_day("end", end)),
            ("TimeZone", _number("timezone", timezone)),
        ],
    )


def update_access_combination(
    uid: Value,
    group1: Value = 0,
    group2: Value = 0,
    group3: Value = 0,
    group4: Value = 0,
    group5: Value = 0,
) -> Built:
    """12.1.1.17 ``DATA UPDATE AccUnLockComb``: up to five user groups, 0 for none."""
    groups = (group1, group2, group3, group4, group5)
    return _update(
        "update_access_combination",
        "AccUnLockComb",
        [("UID", _number("uid", uid))]
        + [(f"Group{n}", _number(f"group{n}", value)) for n, value in enumerate(groups, 1)],
    )


def update_blacklist(id_num: Value) -> Built:
    """12.1.1.18 ``DATA UPDATE Blacklist``: an identity card number."""
    return _update(
        "update_blacklist",
        "Blacklist",
        [("IDNum", _token("id_num", id_num, _ID_NUMBER, "1-32 letters or digits"))],
    )


# -- from stored records (copying a user to other devices) --------------------


def _given(value: str) -> Optional[str]:
    return value if value != "" else None


def _intact(name: str, size_ok: bool) -> None:
    if not size_ok:
        raise InvalidCommand(f"{name}: the stored data does not match its Size (truncated upload)")


def user_update(user: UserInfo) -> Built:
    """``DATA UPDATE USERINFO`` for a stored user; empty numeric fields are left out."""
    return update_user(
        user.pin,
        name=user.name,
        privilege=_given(user.privilege),
        password=user.password,
        card=user.card,
        group=_given(user.group),
        tz=_given(user.tz),
        verify=_given(user.verify),
        vice_card=_given(user.vice_card),
    )


def finger_update(fp: FingerTemplate) -> Built:
    """``DATA UPDATE FINGERTMP`` for a stored fingerprint template."""
    _intact("template", fp.size_ok)
    return update_fingerprint(fp.pin, fp.fid, fp.template, valid=_given(fp.valid) or 1)


def face_update(face: FaceTemplate) -> Built:
    """``DATA UPDATE FACE`` for a stored face template."""
    _intact("template", face.size_ok)
    return update_face(face.pin, face.fid, face.template, valid=_given(face.valid) or 1)


def vein_update(vein: VeinTemplate) -> Built:
    """``DATA UPDATE FVEIN`` for a stored finger-vein template."""
    _intact("template", vein.size_ok)
    valid = _given(vein.valid) or 1
    return update_finger_vein(vein.pin, vein.fid, vein.index, vein.template, valid=valid)


def biodata_update(bio: BioTemplate) -> Built:
    """``DATA UPDATE BIODATA`` for a stored unified template."""
    _intact("template", bio.size_ok)
    return update_biodata(
        bio.pin,
        bio.type,
        bio.template,
        major_ver=bio.major_ver,
        minor_ver=bio.minor_ver,
        no=_given(bio.no) or 0,
        index=_given(bio.index) or 0,
        valid=_given(bio.valid) or 1,
        duress=_given(bio.duress) or 0,
        format=_given(bio.format) or 0,
    )


def userpic_update(photo: UserPhoto) -> Built:
    """``DATA UPDATE USERPIC`` for a stored user photo."""
    _intact("content", photo.size_ok)
    return update_userpic(photo.pin, photo.content)


def biophoto_update(photo: BioPhoto) -> Built:
    """``DATA UPDATE BIOPHOTO`` (base64 mode) for a stored comparison photo."""
    _intact("content", photo.size_ok)
    return update_biophoto(photo.pin, photo.type, content=photo.content)


# -- DATA DELETE (12.1.2) ----------------------------------------------------


def delete_user(pin: Value) -> Built:
    """12.1.2.1 ``DATA DELETE USERINFO``: the user with templates and photo."""
    return _delete("delete_user", "USERINFO", [("PIN", _pin("pin", pin))])


def delete_fingerprint(pin: Value, fid: Optional[Value] = None) -> Built:
    """12.1.2.2 ``DATA DELETE FINGERTMP``: one finger, or all of the user's without ``fid``."""
    pairs = [("PIN", _pin("pin", pin)), ("FID", _opt(_number, "fid", fid, 0, 9))]
    return _delete("delete_fingerprint", "FINGERTMP", pairs)


def delete_face(pin: Value) -> Built:
    """12.1.2.3 ``DATA DELETE FACE``."""
    return _delete("delete_face", "FACE", [("PIN", _pin("pin", pin))])


def delete_finger_vein(pin: Value, fid: Optional[Value] = None) -> Built:
    """12.1.2.4 ``DATA DELETE FVEIN``: one finger, or all without ``fid``."""
    pairs = [("Pin", _pin("pin", pin)), ("FID", _opt(_number, "fid", fid, 0, 9))]
    return _delete("delete_finger_vein", "FVEIN", pairs)


def delete_biodata(pin: Value, type: Optional[Value] = None, no: Optional[Value] = None) -> Built:
    """12.1.2.5 ``DATA DELETE BIODATA``: all, one type, or one type's number ``no``."""
    if no is not None and type is None:
        raise InvalidCommand("no: needs type")
    pairs = [
        ("Pin", _pin("pin", pin)),
        ("Type", _opt(_number, "type", type, 0, 9)),
        ("No", _opt(_number, "no", no, 0, 255)),
    ]
    return _delete("delete_biodata", "BIODATA", pairs)


def delete_userpic(pin: Value) -> Built:
    """12.1.2.6 ``DATA DELETE USERPIC``."""
    return _delete("delete_userpic", "USERPIC", [("PIN", _pin("pin", pin))])


def delete_biophoto(pin: Value) -> Built:
    """12.1.2.7 ``DATA DELETE BIOPHOTO``."""
    return _delete("delete_biophoto", "BIOPHOTO", [("PIN", _pin("pin", pin))])


def delete_sms(uid: Value) -> Built:
    """12.1.2.8 ``DATA DELETE SMS``."""
    return _delete("delete_sms", "SMS", [("UID", _number("uid", uid))])


def delete_workcode(code: Value) -> Built:
    """12.1.2.9 ``DATA DELETE WORKCODE``."""
    return _delete("delete_workcode", "WORKCODE", [("CODE", _pin("code", code))])


def delete_adpic(index: Value) -> Built:
    """12.1.2.10 ``DATA DELETE ADPIC``."""
    return _delete("delete_adpic", "ADPIC", [("Index", _number("index", index))])


# -- DATA QUERY (12.1.3) -----------------------------------------------------


def query_attlog(start: Time, end: Time) -> Built:
    """12.1.3 ``DATA QUERY ATTLOG``: the punches arrive on ``/cdata``."""
    first, last = _period(start, end)
    return _query("query_attlog", "ATTLOG", [("StartTime", first), ("EndTime", last)])


def query_attphoto(start: Time, end: Time) -> Built:
    """12.1.3 ``DATA QUERY ATTPHOTO``."""
    first, last = _period(start, end)
    return _query("query_attphoto", "ATTPHOTO", [("StartTime", first), ("EndTime", last)])


def query_users(pin: Optional[Value] = None) -> Built:
    """12.1.3 ``DATA QUERY USERINFO``: one user, or (firmware behaviour) all without ``pin``."""
    return _query("query_users", "USERINFO", [("PIN", _opt(_pin, "pin", pin))])


def query_fingerprints(pin: Value, fid: Optional[Value] = None) -> Built:
    """12.1.3 ``DATA QUERY FINGERTMP``: one finger (``FingerID``), or all of the user's."""
    pairs = [("PIN", _pin("pin", pin)), ("FingerID", _opt(_number, "fid", fid, 0, 9))]
    return _query("query_fingerprints", "FINGERTMP", pairs)


def query_biodata(type: Value, pin: Optional[Value] = None, no: Optional[Value] = None) -> Built:
    """12.1.3 ``DATA QUERY BIODATA``: a type, narrowed to a user and a number."""
    if no is not None and pin is None:
        raise InvalidCommand("no: needs pin")
    pairs = [
        ("Type", _number("type", type, 0, 9)),
        ("PIN", _opt(_pin, "pin", pin)),
        ("No", _opt(_number, "no", no, 0, 255)),
    ]
    return _query("query_biodata", "BIODATA", pairs)


# -- CLEAR, CHECK, options (12.2-12.4) ---------------------------------------


def clear_log() -> Built:
    """12.2.1 ``CLEAR LOG``: the attendance records."""
    return _standard("clear_log", "CLEAR LOG")


def clear_photo() -> Built:
    """12.2.2 ``CLEAR PHOTO``: the attendance photos."""
    return _standard("clear_photo", "CLEAR PHOTO")


def clear_data() -> Built:
    """12.2.3 ``CLEAR DATA``: everything on the device."""
    return _standard("clear_data", "CLEAR DATA")


def clear_biodata() -> Built:
    """12.2.4 ``CLEAR BIODATA``: the unified templates."""
    return _standard("clear_biodata", "CLEAR BIODATA")


def check() -> Built:
    """12.3.1 ``CHECK``: re-read the options and re-upload from the stamps."""
    return _standard("check", "CHECK")


def log() -> Built:
    """12.3.2 ``LOG``: upload new data now."""
    return _standard("log", "LOG")


def verify_sum(start: Time, end: Time) -> Built:
    """12.3.3 ``VERIFY SUM ATTLOG``: the device answers how many punches it holds in the period."""
    first, last = _period(start, end)
    return _standard("verify_sum", f"VERIFY SUM ATTLOG StartTime={first}\tEndTime={last}")


def set_option(key: Value, value: Value) -> Built:
    """12.4.1 ``SET OPTION key=value``: one option per command."""
    name = _token("key", key, _OPTION_KEY, "an option name (letters, digits, '_', '.', '~')")
    return _standard("set_option", f"SET OPTION {name}={_text('value', value)}")


def reload_options() -> Built:
    """12.4.2 ``RELOAD OPTIONS``."""
    return _standard("reload_options", "RELOAD OPTIONS")


def info() -> Built:
    """12.4.3 ``INFO``: the reply lists the device's configuration."""
    return _standard("info", "INFO")


# -- files (12.5) ------------------------------------------------------------

_SYNC_TABLES = ("USERINFO", "FINGERTMP", "FACE")


def get_file(path: str) -> Built:
    """12.5.1 ``GetFile path``: the reply carries the file."""
    return Built(f"GetFile {_no_space('path', path)}", "get_file", "files")


def put_file(
    url: str,
    path: Optional[str] = None,
    action: Optional[str] = None,
    table: Optional[str] = None,
    record_count: Optional[Value] = None,
) -> Built:
    """
    12.5.2 ``PutFile url<TAB>path``: the device downloads ``url`` (relative
    to ``/iclock/`` unless it starts with ``http://``).  Function 2 adds
    ``action``: ``SyncData`` (with ``table`` USERINFO, FINGERTMP or FACE and
    ``record_count``) or ``AppendData``; both need ``path``.
    """
    fields = [_no_space("url", url)]
    if path is not None:
        fields.append(_no_space("path", path))
    if action is None:
        if table is not None or record_count is not None:
            raise InvalidCommand("action: table and record_count need action=SyncData")
        return Built("PutFile " + "\t".join(fields), "put_file", "files")
    if path is None:
        raise InvalidCommand("path: needed with action")
    name = _text("action", action).lower()
    if name == "appenddata":
        if table is not None or record_count is not None:
            raise InvalidCommand("action: AppendData takes no table or record_count")
        fields.append("Action=AppendData")
    elif name == "syncdata":
        if table is None or record_count is None:
            raise InvalidCommand("action: SyncData needs table and record_count")
        table_name = _text("table", table).upper()
        if table_name not in _SYNC_TABLES:
            raise InvalidCommand(f"table: must be one of {', '.join(_SYNC_TABLES)}")
        count = _number("record_count", record_count)
        fields += ["Action=SyncData", f"TableName={table_name}", f"RecordCount={count}"]
    else:
        raise InvalidCommand("action: must be SyncData or AppendData")
    return Built("PutFile " + "\t".join(fields), "put_file", "files")


# -- remote enrollment (12.6) ------------------------------------------------


def enroll_fp(pin: Value, fid: Value, retry: Value = 3, overwrite: Value = 0) -> Built:
    """12.6.1 ``ENROLL_FP``: enroll finger ``fid`` on the device."""
    pairs = [
        ("PIN", _pin("pin", pin)),
        ("FID", _number("fid", fid, 0, 9)),
        ("RETRY", _number("retry", retry, 1, 10)),
        ("OVERWRITE", _flag("overwrite", overwrite)),
    ]
    return _standard("enroll_fp", f"ENROLL_FP {_record(pairs)}")


def enroll_mf(pin: Value, retry: Value = 3) -> Built:
    """12.6.2 ``ENROLL_MF``: enroll a card."""
    pairs = [("PIN", _pin("pin", pin)), ("RETRY", _number("retry", retry, 1, 10))]
    return _standard("enroll_mf", f"ENROLL_MF {_record(pairs)}")


def enroll_bio(
    type: Value, pin: Value, card_no: Value = "", retry: Value = 3, overwrite: Value = 0
) -> Built:
    """12.6.3 ``ENROLL_BIO``: enroll a face, palm... (Type 0-9); every field is sent."""
    pairs = [
        ("TYPE", _number("type", type, 0, 9)),
        ("PIN", _pin("pin", pin)),
        ("CardNo", _card("card_no", card_no)),
        ("RETRY", _number("retry", retry, 1, 10)),
        ("OVERWRITE", _flag("overwrite", overwrite)),
    ]
    return _standard("enroll_bio", f"ENROLL_BIO {_record(pairs)}")


# -- control and other commands (12.7, 12.8) ---------------------------------


def reboot() -> Built:
    """12.7.1 ``REBOOT``."""
    return _standard("reboot", "REBOOT")


def unlock() -> Built:
    """12.7.2 ``AC_UNLOCK``: open the door."""
    return _standard("unlock", "AC_UNLOCK")


def unalarm() -> Built:
    """12.7.3 ``AC_UNALARM``: stop the alarm output."""
    return _standard("unalarm", "AC_UNALARM")


def shell(command: Value) -> Built:
    """12.8.1 ``SHELL command``: the reply carries the exit status and output."""
    text = _text("command", command, allow_empty=False)
    if not text.strip():
        raise InvalidCommand("command: must not be blank")
    return Built(f"SHELL {text}", "shell", "shell")


def upgrade(url: str, checksum: Value, size: Value, method: Value = 1) -> Built:
    """
    12.8.2 ``UPGRADE``.  Method 1: ``checksum=..,url=..,size=..`` (the server
    serves the firmware as base64, size is the original file's); method 2:
    ``type=1,checksum=..,size=..,url=..`` (the file as is, size is the
    package's).  The checksum is the MD5 the server computed.
    """
    link = _no_space("url", url)
    if "," in link:
        raise InvalidCommand("url: must not contain ','")
    digest = _token("checksum", checksum, _CHECKSUM, "1-64 letters or digits")
    length = _number("size", size)
    how = _int("method", method, 1, 2)
    if how == 1:
        text = f"UPGRADE checksum={digest},url={link},size={length}"
    else:
        text = f"UPGRADE type=1,checksum={digest},size={length},url={link}"
    return Built(text, "upgrade", "upgrade")


# -- raw text ----------------------------------------------------------------

_FAMILY_PREFIXES = (
    ("SHELL", "shell"),
    ("GETFILE", "files"),
    ("PUTFILE", "files"),
    ("UPGRADE", "upgrade"),
)


def _family(text: str) -> str:
    """
    A command's family by its first word, case-insensitively and by prefix
    (``SHELLx`` counts as SHELL), so no spelling slips past the family gate.
    """
    head = text.lstrip().upper()
    for prefix, family in _FAMILY_PREFIXES:
        if head.startswith(prefix):
            return family
    return "standard"


def validate_raw(text: str) -> Built:
    """
    Command text given as is.  Spaces and TABs around it are removed, nothing
    inside is touched; CR, LF and NUL are refused (they would end the line and
    start a command of the caller's choosing).
    """
    if not isinstance(text, str):
        raise InvalidCommand("command: must be a string")
    bad = _LINE_BREAKERS.search(text)
    if bad is not None:
        raise InvalidCommand(f"command: {_describe(bad.group())} is not allowed")
    command = text.strip(" \t")
    if not command:
        raise InvalidCommand("command: must not be empty")
    return Built(command, "raw", _family(command))


def raw(command: str) -> Built:
    """The ``raw`` kind of :func:`build`: :func:`validate_raw`."""
    return validate_raw(command)


# -- the registry ------------------------------------------------------------

_ALL_BUILDERS: Tuple[Tuple[str, Callable[..., Built]], ...] = (
    ("reboot", reboot),
    ("info", info),
    ("check", check),
    ("log", log),
    ("unlock", unlock),
    ("unalarm", unalarm),
    ("reload_options", reload_options),
    ("set_option", set_option),
    ("clear_log", clear_log),
    ("clear_photo", clear_photo),
    ("clear_data", clear_data),
    ("clear_biodata", clear_biodata),
    ("verify_sum", verify_sum),
    ("query_attlog", query_attlog),
    ("query_attphoto", query_attphoto),
    ("query_users", query_users),
    ("query_fingerprints", query_fingerprints),
    ("query_biodata", query_biodata),
    ("update_user", update_user),
    ("update_idcard", update_idcard),
    ("update_fingerprint", update_fingerprint),
    ("update_face", update_face),
    ("update_finger_vein", update_finger_vein),
    ("update_biodata", update_biodata),
    ("update_userpic", update_userpic),
    ("update_biophoto", update_biophoto),
    ("update_sms", update_sms),
    ("update_user_sms", update_user_sms),
    ("update_adpic", update_adpic),
    ("update_workcode", update_workcode),
    ("update_shortcut_key", update_shortcut_key),
    ("update_access_group", update_access_group),
    ("update_access_timezone", update_access_timezone),
    ("update_access_holiday", update_access_holiday),
    ("update_access_combination", update_access_combination),
    ("update_blacklist", update_blacklist),
    ("delete_user", delete_user),
    ("delete_fingerprint", delete_fingerprint),
    ("delete_face", delete_face),
    ("delete_finger_vein", delete_finger_vein),
    ("delete_biodata", delete_biodata),
    ("delete_userpic", delete_userpic),
    ("delete_biophoto", delete_biophoto),
    ("delete_sms", delete_sms),
    ("delete_workcode", delete_workcode),
    ("delete_adpic", delete_adpic),
    ("get_file", get_file),
    ("put_file", put_file),
    ("enroll_fp", enroll_fp),
    ("enroll_mf", enroll_mf),
    ("enroll_bio", enroll_bio),
    ("shell", shell),
    ("upgrade", upgrade),
    ("raw", raw),
)

#: Every builder by kind name, as :func:`build` (and the REST API) knows them.
BUILDERS: Mapping[str, Callable[..., Built]] = MappingProxyType(dict(_ALL_BUILDERS))


def _parameters(builder: Callable[..., Built]) -> Tuple[Tuple[str, ...], FrozenSet[str]]:
    """(required names in order, every name) of a builder."""
    params = inspect.signature(builder).parameters.values()
    required = tuple(p.name for p in params if p.default is inspect.Parameter.empty)
    return required, frozenset(p.name for p in params)


_SIGNATURES = {kind: _parameters(builder) for kind, builder in _ALL_BUILDERS}


def build(kind: str, params: Mapping[str, Any]) -> Built:
    """
    Build the command of ``kind`` from JSON parameters (numbers as JSON
    numbers or decimal strings; ``null`` counts as not given).  A ``kind``
    key in ``params`` is allowed when it names the same kind, so a request
    body can be passed whole.

    :raises InvalidCommand: unknown kind, missing or unknown parameters,
        invalid values.
    """
    builder = BUILDERS.get(kind) if isinstance(kind, str) else None
    if builder is None:
        raise InvalidCommand(f"kind: unknown command kind {kind!r}")
    return _call(kind, builder, _SIGNATURES[kind], params)


def _call(
    kind: str,
    builder: Callable[..., Built],
    signature: Tuple[Tuple[str, ...], FrozenSet[str]],
    params: Mapping[str, Any],
) -> Built:
    """Check JSON ``params`` against a builder's ``(required, allowed)`` names, then build."""
    if not isinstance(params, Mapping):
        raise InvalidCommand(f"{kind}: parameters must be an object")
    given: Dict[str, Any] = {}
    for key, value in params.items():
        if key == "kind":
            if value != kind:
                raise InvalidCommand(f"kind: {value!r} does not match {kind!r}")
            continue
        if value is not None:
            given[str(key)] = value
    required, allowed = signature
    unknown = sorted(name for name in given if name not in allowed)
    if unknown:
        raise InvalidCommand(f"{kind}: unknown parameter(s) {', '.join(unknown)}")
    missing = [name for name in required if name not in given]
    if missing:
        raise InvalidCommand(f"{kind}: missing parameter(s) {', '.join(missing)}")
    return builder(**given)


# -- formatting --------------------------------------------------------------


def command_id_ok(command_id: object) -> bool:
    """Spec 12: a command ID is 1-16 letters and digits."""
    return isinstance(command_id, str) and _COMMAND_ID.match(command_id) is not None


def format_commands(commands: Sequence[Tuple[str, str]], encoding: str = "utf-8") -> bytes:
    """
    A getrequest reply: ``C:<id>:<command>`` lines joined by LF, no trailing
    LF, in the device's codec (GB18030 for Chinese devices); characters the
    codec cannot write become ``?``.

    :raises InvalidCommand: a bad ID, or a command that is empty or holds
        CR, LF or NUL.
    """
    lines = []
    for command_id, command in commands:
        if not command_id_ok(command_id):
            raise InvalidCommand(f"id: command ID {command_id!r} is not 1-16 letters or digits")
        if not isinstance(command, str) or not command:
            raise InvalidCommand(f"command: empty command for ID {command_id}")
        bad = _LINE_BREAKERS.search(command)
        if bad is not None:
            raise InvalidCommand(f"command: {_describe(bad.group())} in command {command_id}")
        lines.append(f"C:{command_id}:{command}")
    try:
        return "\n".join(lines).encode(encoding, "replace")
    except LookupError:
        raise InvalidCommand(f"encoding: unknown codec {encoding!r}") from None


# -- replies (spec 13, Appendix 1) -------------------------------------------

#: Appendix 1, the general table.
_MEANINGS = {
    0: "Successful",
    -1: "The parameter is incorrect",
    -2: "The transmitted user photo data does not match the given size",
    -3: "Reading or writing is incorrect",
    -9: "The transmitted template data does not match the given size",
    -10: "The user specified by PIN does not exist in the equipment",
    -11: "The fingerprint template format is illegal",
    -12: "The fingerprint template is illegal",
    -1001: "Limited capacity",
    -1002: "Not supported by the equipment",
    -1003: "Command execution timeout",
    -1004: "The data and equipment configuration are inconsistent",
    -1005: "The equipment is busy",
    -1006: "The data is too long",
    -1007: "Memory error",
    -1008: "Failed to get server data",
}

#: Appendix 1, the ENROLL_FP / ENROLL_BIO table.
_ENROLL_MEANINGS = {
    2: "Enroll: templates of the user already exist",
    4: "Enroll: registration failed (poor quality or inconsistent samples)",
    5: "Enroll: the template already exists in the database",
    6: "Enroll: registration was cancelled",
    7: "Enroll: the device is busy",
}

#: 12.6.2, the ENROLL_MF return values.
_ENROLL_MF_MEANINGS = {
    1: "Enroll card: parameter error",
    3: "Enroll card: access error",
    4: "Enroll card: failed after the retries",
    5: "Enroll card: timed out",
    6: "Enroll card: cancelled with Esc",
}

#: What a real device's GetFile ``Return=-2`` means (tests/vectors/real/021).
_GETFILE_MEANINGS = {-2: "The file does not exist or cannot be read"}

_CODE = re.compile(r"\A[+-]?[0-9]{1,18}\Z")
_REPLY_KEYS = frozenset({"id", "return", "cmd"})


def _code(text: str) -> Optional[int]:
    return int(text) if _CODE.match(text) else None


def _meaning(code: int, *tables: Mapping[int, str]) -> str:
    for table in tables:
        if code in table:
            return f"{code}: {table[code]}"
    return f"{code}: Unknown return code"


def _param(reply: CommandReply, name: str) -> Optional[str]:
    for key, value in reply.params:
        if key.lower() == name.lower():
            return value
    return None


def _extras(reply: CommandReply) -> Dict[str, Any]:
    return {key: value for key, value in reply.params if key.lower() not in _REPLY_KEYS}


def _verb(command: str) -> Tuple[str, str]:
    words = command.upper().split(None, 2)
    return (words[0] if words else "", words[1] if len(words) > 1 else "")


def _b64(content: Optional[bytes]) -> str:
    return base64.b64encode(content or b"").decode("ascii")


def interpret(command: str, reply: CommandReply) -> Outcome:
    """
    What ``reply`` says about ``command`` (the text that was sent; when it is
    empty, the reply's ``CMD`` is used).  ``Return`` 0 is success; ENROLL_*
    have their own positive codes; GetFile and PutFile return a size (or a
    count) where any value >= 0 is success; SHELL returns the command's exit
    status and succeeds when the output came back.
    """
    rc = reply.return_code.strip()
    code = _code(rc)
    first, second = _verb(command or reply.cmd)
    if first == "SHELL":
        return _shell(rc, code, reply)
    if first == "GETFILE":
        return _getfile(rc, code, reply)
    if code is None:
        reason = f"{rc}: Unreadable return code" if rc else "No return code"
        return Outcome("failed", rc, reason, _extras(reply))
    if first in ("ENROLL_FP", "ENROLL_BIO"):
        return _simple(rc, code, _meaning(code, _MEANINGS, _ENROLL_MEANINGS), _extras(reply))
    if first == "ENROLL_MF":
        return _simple(rc, code, _meaning(code, _MEANINGS, _ENROLL_MF_MEANINGS), _extras(reply))
    if first == "PUTFILE":
        return _putfile(rc, code, "ACTION=SYNCDATA" in command.upper())
    if first == "VERIFY":
        return _verify_sum(rc, code, reply)
    if first == "INFO":
        outcome = _simple(rc, code, _meaning(code, _MEANINGS), {})
        return Outcome(outcome.status, rc, outcome.meaning, {"options": dict(reply.lines)})
    if (first, second) == ("DATA", "QUERY") and code > 0:
        # Some firmware answers a query with how many records it will upload.
        return Outcome("succeeded", rc, f"{code}: Successful, {code} records", _extras(reply))
    return _simple(rc, code, _meaning(code, _MEANINGS), _extras(reply))


def _simple(rc: str, code: int, meaning: str, data: Dict[str, Any]) -> Outcome:
    return Outcome("succeeded" if code == 0 else "failed", rc, meaning, data)


def _shell(rc: str, code: Optional[int], reply: CommandReply) -> Outcome:
    data: Dict[str, Any] = {
        "file_name": _param(reply, "FILENAME") or "",
        "exit_status": code if code is not None else (rc or None),
        "output": _b64(reply.content),
    }
    if reply.content is not None:
        meaning = f"{rc}: Ran, exit status {rc}" if rc else "Ran, no exit status"
        return Outcome("succeeded", rc, meaning, data)
    if code is not None and code < 0:
        return Outcome("failed", rc, _meaning(code, _MEANINGS), data)
    return Outcome("failed", rc, f"{rc or '(none)'}: No output came back", data)


def _getfile(rc: str, code: Optional[int], reply: CommandReply) -> Outcome:
    content = reply.content or b""
    data: Dict[str, Any] = {
        "file_name": _param(reply, "FILENAME") or "",
        "size": code if code is not None and code >= 0 else None,
        "content": _b64(reply.content),
    }
    if code is None:
        reason = f"{rc}: Unreadable return code" if rc else "No return code"
        return Outcome("failed", rc, reason, data)
    if code < 0:
        return Outcome("failed", rc, _meaning(code, _GETFILE_MEANINGS, _MEANINGS), data)
    if len(content) < code:
        reason = f"{code}: File truncated, {len(content)} of {code} bytes came back"
        return Outcome("failed", rc, reason, data)
    return Outcome("succeeded", rc, f"{code}: File received, {code} bytes", data)


def _putfile(rc: str, code: int, sync: bool) -> Outcome:
    if code < 0:
        return Outcome("failed", rc, _meaning(code, _MEANINGS), {"size": None})
    if sync:
        meaning = f"{code}: Data synchronized, {code} commands processed"
        return Outcome("succeeded", rc, meaning, {"size": code, "processed": code})
    return Outcome("succeeded", rc, f"{code}: File saved, {code} bytes", {"size": code})


def _verify_sum(rc: str, code: int, reply: CommandReply) -> Outcome:
    total = _code((_param(reply, "AttlogSum") or "").strip())
    data: Dict[str, Any] = {
        "start": _param(reply, "StartTime") or "",
        "end": _param(reply, "EndTime") or "",
        "attlog_sum": total,
    }
    if code == 0 and total is None:
        return Outcome("failed", rc, "0: The reply carries no AttlogSum", data)
    return _simple(rc, code, _meaning(code, _MEANINGS), data)
