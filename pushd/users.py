# -*- test-case-name: tests.test_commands -*-
"""
Users once, every device.

The operator keeps users on the server (``PUT /api/users/{pin}``); pushd
stores them and queues ``DATA UPDATE`` commands to every approved device (or
the ones named).  Users and templates enrolled on a device are stored as they
arrive and, when the device's group is listed in ``--sync-group``, copied to
the group's other devices.

Templates go where they can be used (spec 3.1): unified templates only to
devices whose hybrid-identification result supports their type (and, when
the device reported ``MultiBioVersion``, their algorithm version); classic
FINGERTMP/FACE/FVEIN commands to devices that have no unified template of
that kind to receive instead.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pushd._deferred import deferred
from pushd.commands import CommandService, command_json
from pushd.errors import ProtocolError
from pushd.interfaces import IStore
from pushd.model import Device, Page, RecordQuery
from pushd.protocol.commands import (
    Built,
    biodata_update,
    biophoto_update,
    build,
    face_update,
    finger_update,
    user_update,
    userpic_update,
    vein_update,
)
from pushd.protocol.push3 import (
    biodata_update3,
    biophoto_update3,
    finger_update3,
    is_push3,
    user_delete3,
    user_update3,
    userpic_update3,
)
from pushd.protocol.records import (
    BioPhoto,
    BioTemplate,
    FaceTemplate,
    FingerTemplate,
    Record,
    UserInfo,
    UserPhoto,
    VeinTemplate,
)
from pushd.registry import utc_now

__all__ = ["UserService", "commands_for_device", "records_from_body"]

_USER_KEYS = {
    "name": "Name",
    "privilege": "Pri",
    "password": "Passwd",
    "card": "Card",
    "group": "Grp",
    "tz": "TZ",
    "verify": "Verify",
    "vice_card": "ViceCard",
}
_TEMPLATE_KEYS = {"fingerprints", "faces", "veins", "biodata", "photo", "devices"}
_FINGERPRINT, _FACE, _VEIN = "1", "2", "7"


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ProtocolError(f"{name} must be a string or a number")
    return str(value)


def _b64(value: Any, name: str) -> str:
    text = _text(value, name)
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"{name} is not valid base64") from None
    if not text:
        raise ProtocolError(f"{name} is empty")
    return text


def _items(body: Mapping[str, Any], key: str) -> List[Mapping[str, Any]]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ProtocolError(f"{key} must be a list of objects")
    return value


def records_from_body(pin: str, body: Mapping[str, Any]) -> List[Record]:
    """
    The user and templates of a ``PUT /api/users/{pin}`` body.

    :raises ProtocolError: unknown keys, wrong types, invalid base64.
    """
    unknown = sorted(set(body) - set(_USER_KEYS) - _TEMPLATE_KEYS)
    if unknown:
        raise ProtocolError(f"unknown user field(s): {', '.join(unknown)}")
    values = {attr: _text(body.get(attr), attr) for attr in _USER_KEYS}
    fields = (("PIN", pin), *((_USER_KEYS[a], v) for a, v in values.items()))
    user = UserInfo(
        pin=pin,
        name=values["name"],
        privilege=values["privilege"],
        password=values["password"],
        card=values["card"],
        group=values["group"],
        tz=values["tz"],
        verify=values["verify"],
        vice_card=values["vice_card"],
        fields=fields,
    )
    records: List[Record] = [user]
    for item in _items(body, "fingerprints"):
        tmp = _b64(item.get("template"), "fingerprints[].template")
        fid = _text(item.get("fid", 0), "fid")
        valid = _text(item.get("valid", 1), "valid")
        records.append(FingerTemplate(pin, fid, str(len(tmp)), valid, tmp, True))
    for item in _items(body, "faces"):
        tmp = _b64(item.get("template"), "faces[].template")
        fid = _text(item.get("fid", 0), "fid")
        valid = _text(item.get("valid", 1), "valid")
        records.append(FaceTemplate(pin, fid, str(len(tmp)), valid, tmp, True))
    for item in _items(body, "veins"):
        tmp = _b64(item.get("template"), "veins[].template")
        records.append(
            VeinTemplate(
                pin,
                _text(item.get("fid", 0), "fid"),
                _text(item.get("index", 0), "index"),
                str(len(tmp)),
                _text(item.get("valid", 1), "valid"),
                tmp,
                True,
            )
        )
    for item in _items(body, "biodata"):
        tmp = _b64(item.get("template"), "biodata[].template")
        records.append(
            BioTemplate(
                pin=pin,
                no=_text(item.get("no", 0), "no"),
                index=_text(item.get("index", 0), "index"),
                valid=_text(item.get("valid", 1), "valid"),
                duress=_text(item.get("duress", 0), "duress"),
                type=_text(item.get("type"), "type"),
                major_ver=_text(item.get("major_ver", 0), "major_ver"),
                minor_ver=_text(item.get("minor_ver", 0), "minor_ver"),
                format=_text(item.get("format", 0), "format"),
                template=tmp,
                size_ok=True,
            )
        )
    if body.get("photo"):
        content = _b64(body["photo"], "photo")
        records.append(UserPhoto(pin, f"{pin}.jpg", str(len(content)), content, True))
    return records


def _flag(colon_list: str, position: str) -> bool:
    parts = colon_list.split(":") if colon_list else []
    try:
        return parts[int(position)].strip() == "1"
    except (IndexError, ValueError):
        return False


def _version_fits(device: Device, template: BioTemplate) -> bool:
    """The device's MultiBioVersion for the template's type, when it reported one, must match."""
    parts = device.options.get("MultiBioVersion", "").split(":")
    try:
        reported = parts[int(template.type)].strip()
    except (IndexError, ValueError):
        return True
    if reported in ("", "0"):
        return True
    major, _, minor = reported.partition(".")
    return major == template.major_ver.strip() and (
        not minor or not template.minor_ver.strip() or minor == template.minor_ver.strip()
    )


def commands_for_device(device: Device, records: Sequence[Record]) -> List[Built]:
    """The DATA UPDATE commands that give ``device`` these records, as it can use them."""
    if is_push3(device.push_version, device.device_type):
        return _commands_for_push3(records)
    data = device.hybrid.get("MultiBioDataSupport", "")
    photos = device.hybrid.get("MultiBioPhotoSupport", "")
    unified = {
        (r.type, r.no)
        for r in records
        if isinstance(r, BioTemplate) and _flag(data, r.type) and _version_fits(device, r)
    }
    built: List[Built] = []
    for record in records:
        if getattr(record, "size_ok", True) is False:
            continue  # a template that did not match its Size is stored, never copied
        if isinstance(record, UserInfo):
            built.append(user_update(record))
        elif isinstance(record, BioTemplate):
            if (record.type, record.no) in unified:
                built.append(biodata_update(record))
        elif isinstance(record, FingerTemplate):
            if (_FINGERPRINT, record.fid) not in unified:
                built.append(finger_update(record))
        elif isinstance(record, FaceTemplate):
            if not any(kind == _FACE for kind, _ in unified):
                built.append(face_update(record))
        elif isinstance(record, VeinTemplate):
            if (_VEIN, record.fid) not in unified:
                built.append(vein_update(record))
        elif isinstance(record, UserPhoto):
            built.append(userpic_update(record))
        elif isinstance(record, BioPhoto) and _flag(photos, record.type):
            built.append(biophoto_update(record))
    return built


def _commands_for_push3(records: Sequence[Record]) -> List[Built]:
    """The 3.x dialect: users, templatev10 fingerprints, biodata, photos (3.x notes §4.2)."""
    built: List[Built] = []
    for record in records:
        if getattr(record, "size_ok", True) is False:
            continue
        if isinstance(record, UserInfo):
            built.append(user_update3(record))
        elif isinstance(record, BioTemplate):
            built.append(biodata_update3(record))
        elif isinstance(record, FingerTemplate):
            built.append(finger_update3(record))
        elif isinstance(record, UserPhoto):
            built.append(userpic_update3(record))
        elif isinstance(record, BioPhoto):
            built.append(biophoto_update3(record))
    return built


def _user_item(user: UserInfo) -> Dict[str, Any]:
    return {
        "pin": user.pin,
        "name": user.name,
        "privilege": user.privilege,
        "password": user.password,
        "card": user.card,
        "group": user.group,
        "tz": user.tz,
        "verify": user.verify,
        "vice_card": user.vice_card,
    }


def _templates_json(records: Iterable[Record]) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "fingerprints": [],
        "faces": [],
        "veins": [],
        "biodata": [],
        "photo": None,
    }
    for r in records:
        if isinstance(r, FingerTemplate):
            out["fingerprints"].append(
                {"fid": r.fid, "valid": r.valid, "size_ok": r.size_ok, "template": r.template}
            )
        elif isinstance(r, FaceTemplate):
            out["faces"].append(
                {"fid": r.fid, "valid": r.valid, "size_ok": r.size_ok, "template": r.template}
            )
        elif isinstance(r, VeinTemplate):
            out["veins"].append(
                {"fid": r.fid, "index": r.index, "valid": r.valid, "template": r.template}
            )
        elif isinstance(r, BioTemplate):
            out["biodata"].append(
                {
                    "type": r.type,
                    "no": r.no,
                    "index": r.index,
                    "valid": r.valid,
                    "duress": r.duress,
                    "major_ver": r.major_ver,
                    "minor_ver": r.minor_ver,
                    "format": r.format,
                    "template": r.template,
                }
            )
        elif isinstance(r, UserPhoto):
            out["photo"] = r.content
    return out


class UserService:
    """Server-side users, sent to the devices that should hold them."""

    log = Logger()

    def __init__(
        self,
        store: IStore,
        commands: CommandService,
        clock: IReactorTime,
        sync_groups: FrozenSet[str] = frozenset(),
    ) -> None:
        self._store = store
        self._commands = commands
        self._clock = clock
        self._sync_groups = sync_groups

    async def _targets(
        self, names: Optional[Sequence[str]], keep: Callable[[Device], bool]
    ) -> List[Device]:
        devices = await self._store.list_devices()
        if names is not None:
            known = {d.sn: d for d in devices}
            missing = [sn for sn in names if sn not in known]
            if missing:
                raise ProtocolError(f"unknown device(s): {', '.join(missing)}")
            return [known[sn] for sn in names]
        return [d for d in devices if d.state == "approved" and keep(d)]

    async def _send(
        self, devices: Iterable[Device], records: Sequence[Record]
    ) -> List[Dict[str, Any]]:
        queued = []
        for device in devices:
            for built in commands_for_device(device, records):
                queued.append(command_json(await self._commands.queue(device.sn, built)))
        return queued

    @staticmethod
    def _device_names(body: Mapping[str, Any]) -> Optional[List[str]]:
        names = body.get("devices")
        if names is None:
            return None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ProtocolError("devices must be a list of serial numbers")
        return names

    @deferred
    async def put(self, pin: str, body: Mapping[str, Any]) -> Dict[str, Any]:
        """
        Create or replace a user and send it to every approved device (or ``devices``).

        :raises ProtocolError: a bad body, an invalid PIN or template, an unknown device.
        """
        records = records_from_body(pin, body)
        user = records[0]
        assert isinstance(user, UserInfo)
        user_update(user)  # validates the PIN and fields before anything is stored
        targets = await self._targets(self._device_names(body), lambda d: True)
        await self._store.save_user(user, records[1:], utc_now(self._clock))
        queued = await self._send(targets, records)
        return {"user": await self.get(pin), "commands": queued}

    @deferred
    async def delete(self, pin: str, devices: Optional[List[str]] = None) -> Dict[str, Any]:
        """Delete a user from the server and from every approved device (or ``devices``)."""
        removal = build("delete_user", {"pin": pin})
        targets = await self._targets(devices, lambda d: True)
        deleted = await self._store.delete_user(pin)
        queued = []
        for target in targets:
            steps = (
                user_delete3(pin)
                if is_push3(target.push_version, target.device_type)
                else [removal]
            )
            for step in steps:
                queued.append(command_json(await self._commands.queue(target.sn, step)))
        return {"deleted": deleted, "commands": queued}

    @deferred
    async def get(self, pin: str) -> Optional[Dict[str, Any]]:
        """The user with its templates and the devices that sent it, or ``None``."""
        user = await self._store.get_user(pin)
        if user is None:
            return None
        item = _user_item(user)
        item.update(_templates_json(await self._store.user_templates(pin)))
        item["devices"] = await self._store.user_devices(pin)
        return item

    @deferred
    async def list(self, query: RecordQuery) -> Page:
        """A page of users, each with its templates."""
        page = await self._store.query("users", query)
        items = []
        for row in page.items:
            item = {key: row[key] for key in ("id", *_user_item(UserInfo(pin="")))}
            item.update(_templates_json(await self._store.user_templates(row["pin"])))
            item["devices"] = row.get("devices", [])
            items.append(item)
        return Page(items, page.next)

    @deferred
    async def sync_from_device(self, device: Device, records: Sequence[Record]) -> None:
        """Copy users and templates a device uploaded to the other devices of its group."""
        if not device.group or device.group not in self._sync_groups:
            return
        shared = [
            r
            for r in records
            if isinstance(
                r,
                (
                    UserInfo,
                    FingerTemplate,
                    FaceTemplate,
                    VeinTemplate,
                    BioTemplate,
                    UserPhoto,
                    BioPhoto,
                ),
            )
        ]
        if not shared:
            return
        peers = await self._targets(None, lambda d: d.group == device.group and d.sn != device.sn)
        queued = await self._send(peers, shared)
        if queued:
            self.log.info(
                "Copying {n} record(s) from {sn} to group {group}: {m} command(s)",
                n=len(shared),
                sn=device.sn,
                group=device.group,
                m=len(queued),
            )
