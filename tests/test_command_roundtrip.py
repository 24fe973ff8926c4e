"""
Layer 3: every command kind goes through a full round trip between pushd and
``pushd-sim``, all in memory.

A command is queued through the REST API (``POST /api/devices/{sn}/commands``
on :func:`pushd.api.build_api`, with the bearer token) -- or, while the API
is not importable, through ``app.commands.submit``, the service behind that
endpoint -- delivered on the virtual device's poll, executed by it, replied
to, and read back (``GET /api/commands/{id}``, else ``app.commands.get``):
its final status and the parsed ``reply``, and what changed on the device and
on the server.

:data:`ROUND_TRIPS` holds one round trip for every kind in
:data:`pushd.protocol.commands.BUILDERS`; a new builder without one fails
:func:`test_every_builder_kind_round_trips`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from treq.testing import StubTreq
from twisted.internet import defer
from twisted.python.failure import Failure

from pushd.commands import CommandSettings, command_json, parse_allowed_families
from pushd.config import Config, default_options
from pushd.errors import PushdError
from pushd.model import RecordQuery
from pushd.protocol.commands import BUILDERS
from pushd.sim import HOME, Punch, Template, VirtualDevice, make_jpeg
from pushd.storage.memory import MemoryStore
from pushd.testing import TestServer

try:
    from pushd.api import build_api
except ImportError:  # pragma: no cover - the API is not there yet: use the service behind it
    build_api = None  # type: ignore[assignment]

DEVICE_BASE = "http://192.168.1.2:8080"
API_BASE = "http://127.0.0.1:8081"
TOKEN = "round-trip-token-0123456789"
SN = "RT00000001"
TEMPLATE = base64.b64encode(bytes(range(48))).decode()
OTHER_TEMPLATE = base64.b64encode(bytes(range(100, 148))).decode()
JPEG = make_jpeg(b"round trip")
FIRMWARE = b"\x7fELF" + bytes(range(256)) * 9
ALL_FAMILIES = parse_allowed_families("all")
DAY: Dict[str, Any] = {"start": "2024-01-02 00:00:00", "end": "2024-01-02 23:59:59"}


def when(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S")


class Rig:
    """
    pushd in memory (memory store, data directory ``tmp_path``), its REST
    API, and one virtual device that has handshaken, pushed its options,
    enrolled four users (fingerprints for all, visible-light faces for 2 and
    4), uploaded four punches (one with a photo) and polled once.
    """

    def __init__(
        self, tmp_path: Any, settings: Optional[CommandSettings] = None, encoding: str = "utf-8"
    ) -> None:
        self.files = tmp_path / "files"
        (self.files / "firmware").mkdir(parents=True)
        (self.files / "firmware" / "emfw.cfg").write_bytes(FIRMWARE)
        config = Config(
            data_dir=str(tmp_path),
            registration="open",
            options=default_options(0),
            commands=settings or CommandSettings(),
        )
        self.store = MemoryStore()
        self.server = TestServer(config, self.store)
        self.app = self.server.app
        self.run(self.store.open())
        self.api: Optional[StubTreq] = None
        if build_api is not None:
            root = build_api(
                self.app, TOKEN, self.app.commands, self.app.users, self.server.reactor
            )
            self.api = StubTreq(root)
        self.device = VirtualDevice(
            self.server.treq,
            self.server.reactor,
            DEVICE_BASE,
            SN,
            encoding=encoding,
            rng=random.Random(5),
        )
        self.polls = 0
        self.boot()

    def boot(self) -> None:
        device = self.device
        self.run(device.handshake())
        self.run(device.push_options())
        device.enroll(4)
        device.punch("1", when("2024-01-02 08:00:00"), photo=True)
        device.punch("2", when("2024-01-02 08:05:00"))
        device.punch("1", when("2024-01-02 17:00:00"))
        device.punch("3", when("2024-01-03 08:00:00"))
        self.run(device.flush())
        self.poll()
        assert device.pending() == 0

    # -- driving -------------------------------------------------------------

    def run(self, awaitable: Any) -> Any:
        """Run a coroutine or Deferred to its end, pumping the in-memory connections."""
        results: List[Any] = []
        defer.ensureDeferred(awaitable).addBoth(results.append)
        for _ in range(1000):
            if results:
                break
            self.server.treq.flush()
            if self.api is not None:
                self.api.flush()
        assert results, "did not finish"
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def poll(self) -> List[Any]:
        """One poll of the device (after a handshake if it restarted): its replies."""
        if self.device.needs_handshake:
            self.run(self.device.handshake())
        self.polls += 1
        return self.run(self.device.poll())

    def lost_poll(self) -> bytes:
        """A poll whose answer never reaches the device: the server delivered, nobody executes."""
        treq: Any = self.server.treq
        response = self.run(treq.get(f"{DEVICE_BASE}/iclock/getrequest?SN={SN}"))
        assert response.code == 200
        return self.run(treq.content(response))

    # -- the API (or the service behind it) ------------------------------------

    def _api(self, method: str, path: str, body: Any = None) -> Tuple[int, Any]:
        api: Any = self.api
        assert api is not None
        headers = {b"Authorization": [f"Bearer {TOKEN}".encode()]}
        data = json.dumps(body).encode() if body is not None else None
        response = self.run(api.request(method, API_BASE + path, headers=headers, data=data))
        return response.code, json.loads(self.run(api.content(response)))

    def submit(self, body: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        """Queue a command: ``(HTTP status, command object or {"error": ...})``."""
        if self.api is not None:
            return self._api("POST", f"/api/devices/{SN}/commands", body)
        try:
            command = self.run(self.app.commands.submit(SN, body))
        except PushdError as e:
            return e.status, {"error": str(e)}
        return 201, command_json(command)

    def queue(self, body: Dict[str, Any]) -> Dict[str, Any]:
        status, command = self.submit(body)
        assert status == 201, command
        assert command["status"] == "pending"
        return command

    def get(self, cmd_id: str) -> Dict[str, Any]:
        """The command as the API shows it."""
        if self.api is not None:
            status, command = self._api("GET", f"/api/commands/{cmd_id}")
            assert status == 200, command
            return command
        found = self.run(self.app.commands.get(cmd_id))
        assert found is not None
        return command_json(found)

    def round_trip(self, body: Dict[str, Any], polls: int = 5) -> Dict[str, Any]:
        """Queue ``body``, let the device poll until it is answered, read it back."""
        cmd_id = self.queue(body)["id"]
        for _ in range(polls):
            self.poll()
            command = self.get(cmd_id)
            if command["status"] not in ("pending", "sent"):
                return command
        raise AssertionError(f"{body} not answered after {polls} polls: {self.get(cmd_id)}")

    # -- the server's store ----------------------------------------------------

    def stored(self, kind: str, **filters: Any) -> List[Dict[str, Any]]:
        page = self.run(self.store.query(kind, RecordQuery(limit=10000, **filters)))
        return page.items

    def put_file(self, relative: str, content: bytes) -> None:
        path = self.files / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


@pytest.fixture
def rig(tmp_path: Any) -> Rig:
    return Rig(tmp_path, CommandSettings(allowed=ALL_FAMILIES))


def tgz(members: Dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# -- one round trip per builder ------------------------------------------------


Check = Callable[[Rig, Dict[str, Any]], None]


@dataclass(frozen=True)
class Case:
    """A command body, what to set up first, and what must be true after its round trip."""

    body: Dict[str, Any]
    check: Check
    prepare: Optional[Callable[[Rig], None]] = None


ROUND_TRIPS: Dict[str, Case] = {}


def round_trip(
    kind: str, prepare: Optional[Callable[[Rig], None]] = None, **params: Any
) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        ROUND_TRIPS[kind] = Case({"kind": kind, **params}, check, prepare)
        return check

    return register


def records(rig: Rig, table: str) -> Dict[Tuple[str, ...], Dict[str, str]]:
    return rig.device.state.table(table)


# control and options


@round_trip("reboot")
def reboot_asks_for_a_handshake(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.needs_handshake
    rig.poll()  # handshakes again first
    assert not rig.device.needs_handshake


@round_trip("info")
def info_lists_the_options(rig: Rig, command: Dict[str, Any]) -> None:
    options = command["reply"]["options"]
    assert options["~SerialNumber"] == SN
    assert options["UserCount"] == "4" and options["FPCount"] == "4"
    device = rig.run(rig.store.get_device(SN))
    assert device.options["FWVersion"] == options["FWVersion"]


@round_trip("check")
def check_makes_the_device_upload_again(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.stamps["ATTLOG"] == "0"
    assert rig.device.pending("ATTLOG") == 4
    rig.run(rig.device.flush())
    assert len(rig.stored("attendance", sn=SN)) == 4  # stored once


def _unsent_punch(rig: Rig) -> None:
    rig.device.punch("2", when("2024-01-05 09:30:00"))


@round_trip("log", prepare=_unsent_punch)
def log_uploads_new_data(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.pending() == 0
    assert [p["time"] for p in rig.stored("attendance", pin="2")][-1] == "2024-01-05T09:30:00"


@round_trip("unlock")
def unlock_opens_the_door(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.state.unlocks == 1


def _alarm(rig: Rig) -> None:
    rig.device.state.alarm = True


@round_trip("unalarm", prepare=_alarm)
def unalarm_stops_the_alarm(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.state.alarm is False


@round_trip("reload_options")
def reload_options_pushes_them_again(rig: Rig, command: Dict[str, Any]) -> None:
    assert not rig.device.options_pushed
    rig.run(rig.device.push_options())
    assert rig.device.options_pushed


@round_trip("set_option", key="Delay", value="20")
def set_option_changes_the_device(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.delay == 20
    assert rig.device.state.settings["Delay"] == "20"


@round_trip("raw", command="SET OPTION TimeZone=8")
def raw_text_is_executed_as_is(rig: Rig, command: Dict[str, Any]) -> None:
    assert command["command"] == "SET OPTION TimeZone=8"
    assert rig.device.state.settings["TimeZone"] == "8"


# CLEAR


@round_trip("clear_log")
def clear_log_empties_the_log(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.state.attlogs == []
    assert rig.device.state.users  # nothing else


@round_trip("clear_photo")
def clear_photo_removes_photos(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.state.photos == [] and len(rig.device.state.attlogs) == 4


@round_trip("clear_data")
def clear_data_removes_everything(rig: Rig, command: Dict[str, Any]) -> None:
    state = rig.device.state
    assert not state.users and not state.templates and not state.attlogs and not state.records


@round_trip("clear_biodata")
def clear_biodata_removes_templates(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.state.templates == {} and len(rig.device.state.users) == 4


@round_trip("verify_sum", **DAY)
def verify_sum_counts_the_days_punches(rig: Rig, command: Dict[str, Any]) -> None:
    reply = command["reply"]
    assert (reply["start"], reply["end"], reply["attlog_sum"]) == (
        "2024-01-02 00:00:00",
        "2024-01-02 23:59:59",
        3,
    )


# DATA QUERY: the records come up on cdata with CmdId


def _punches_the_server_lost(rig: Rig) -> None:
    # in the device's log, never uploaded (as if the server's copy was lost)
    rig.device.state.attlogs.append(Punch("4", when("2024-01-04 09:00:00"), index=5))
    rig.device.state.attlogs.append(Punch("4", when("2024-01-04 18:00:00"), index=6))


@round_trip(
    "query_attlog",
    prepare=_punches_the_server_lost,
    start="2024-01-04 00:00:00",
    end="2024-01-04 23:59:59",
)
def query_attlog_uploads_the_punches_naming_the_command(rig: Rig, command: Dict[str, Any]) -> None:
    assert command["reply"]["records"] == 2
    linked = rig.stored("attendance", sn=SN, cmd_id=command["id"])
    assert [p["time"] for p in linked] == ["2024-01-04T09:00:00", "2024-01-04T18:00:00"]


def _photo_the_server_lacks(rig: Rig) -> None:
    rig.device.state.photos.append(
        (Punch("4", when("2024-01-04 09:00:00")), make_jpeg(b"late photo"))
    )


@round_trip(
    "query_attphoto",
    prepare=_photo_the_server_lacks,
    start="2024-01-04 00:00:00",
    end="2024-01-04 23:59:59",
)
def query_attphoto_uploads_the_photos(rig: Rig, command: Dict[str, Any]) -> None:
    names = [p["name"] for p in rig.stored("attphotos", sn=SN)]
    assert "20240104090000-4.jpg" in names


def _rename_user_1(rig: Rig) -> None:
    users = rig.device.state.users
    users["1"] = replace(users["1"], name="Renamed On Device")


@round_trip("query_users", prepare=_rename_user_1, pin="1")
def query_users_uploads_the_user(rig: Rig, command: Dict[str, Any]) -> None:
    [user] = rig.stored("users", pin="1")
    assert user["name"] == "Renamed On Device"


def _new_finger_data(rig: Rig) -> None:
    templates = rig.device.state.templates
    key = ("1", 1, 6, 0)
    templates[key] = replace(templates[key], data=base64.b64decode(OTHER_TEMPLATE))


@round_trip("query_fingerprints", prepare=_new_finger_data, pin="1", fid=6)
def query_fingerprints_uploads_the_template(rig: Rig, command: Dict[str, Any]) -> None:
    [finger] = rig.stored("fingerprints", pin="1")
    assert (finger["fid"], finger["template"]) == ("6", OTHER_TEMPLATE)


def _new_face_data(rig: Rig) -> None:
    templates = rig.device.state.templates
    key = ("2", 9, 0, 0)
    templates[key] = replace(templates[key], data=base64.b64decode(OTHER_TEMPLATE))


@round_trip("query_biodata", prepare=_new_face_data, type=9, pin="2")
def query_biodata_uploads_the_template(rig: Rig, command: Dict[str, Any]) -> None:
    [face] = rig.stored("biodata", pin="2")
    assert (face["type"], face["template"]) == ("9", OTHER_TEMPLATE)


# DATA UPDATE


@round_trip("update_user", pin="50", name="Zed", privilege=14, card="777", group=2)
def update_user_creates_the_user(rig: Rig, command: Dict[str, Any]) -> None:
    user = rig.device.state.users["50"]
    assert (user.name, user.privilege, user.card, user.group) == ("Zed", 14, "777", 2)


@round_trip(
    "update_idcard",
    pin="0",
    id_num="11010119900307001X",
    name="Zhang San",
    gender=1,
    birthday="19900307",
    photo=TEMPLATE,
)
def update_idcard_stores_the_card(rig: Rig, command: Dict[str, Any]) -> None:
    card = records(rig, "IDCARD")[("0", "11010119900307001X")]
    assert (card["name"], card["gender"], card["birthday"]) == ("Zhang San", "1", "19900307")


@round_trip("update_fingerprint", pin="1", fid=3, template=TEMPLATE)
def update_fingerprint_stores_it(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.state.templates[("1", 1, 3, 0)].data == base64.b64decode(TEMPLATE)


@round_trip("update_face", pin="1", fid=4, template=TEMPLATE)
def update_face_stores_it(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.state.templates[("1", 2, 0, 4)].data == base64.b64decode(TEMPLATE)


@round_trip("update_finger_vein", pin="1", fid=2, index=1, template=TEMPLATE)
def update_finger_vein_stores_it(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.state.templates[("1", 7, 2, 1)].data == base64.b64decode(TEMPLATE)


@round_trip("update_biodata", pin="1", type=8, no=1, template=TEMPLATE, major_ver=12)
def update_biodata_stores_it(rig: Rig, command: Dict[str, Any]) -> None:
    palm = rig.device.state.templates[("1", 8, 1, 0)]
    assert (palm.data, palm.major) == (base64.b64decode(TEMPLATE), "12")


@round_trip("update_userpic", pin="3", content=base64.b64encode(JPEG).decode())
def update_userpic_stores_the_photo(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.state.users["3"].photo == JPEG


@round_trip("update_biophoto", pin="3", type=9, content=base64.b64encode(JPEG).decode())
def update_biophoto_stores_the_photo(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.state.biophotos[("3", "9")] == JPEG


@round_trip("update_sms", uid=5, message="Welcome", minutes=60, start="2024-01-02 08:00:00")
def update_sms_stores_the_message(rig: Rig, command: Dict[str, Any]) -> None:
    message = records(rig, "SMS")[("5",)]
    assert (message["msg"], message["tag"], message["min"]) == ("Welcome", "253", "60")


@round_trip("update_user_sms", pin="1", uid=5)
def update_user_sms_stores_the_link(rig: Rig, command: Dict[str, Any]) -> None:
    assert ("1", "5") in records(rig, "USER_SMS")


@round_trip("update_adpic", index=1, extension="jpg", content=base64.b64encode(JPEG).decode())
def update_adpic_stores_the_picture(rig: Rig, command: Dict[str, Any]) -> None:
    picture = records(rig, "ADPIC")[("1",)]
    assert base64.b64decode(picture["content"]) == JPEG and picture["extension"] == "jpg"


@round_trip("update_workcode", pin="1", code="8", name="Night shift")
def update_workcode_stores_it(rig: Rig, command: Dict[str, Any]) -> None:
    assert records(rig, "WORKCODE")[("8",)]["name"] == "Night shift"


@round_trip(
    "update_shortcut_key",
    key_id=1,
    key_fun=1,
    status_code=0,
    show_name="Check-In",
    auto_state=1,
    auto_time="08:00;08:00;08:00;08:00;08:00;08:00;08:00",
    mon=1,
)
def update_shortcut_key_stores_it(rig: Rig, command: Dict[str, Any]) -> None:
    key = records(rig, "ShortcutKey")[("1",)]
    assert (key["showname"], key["mon"]) == ("Check-In", "1")


@round_trip("update_access_group", group_id=1, tz="1;1;0;0", valid_holiday=1)
def update_access_group_stores_it(rig: Rig, command: Dict[str, Any]) -> None:
    assert records(rig, "AccGroup")[("1",)]["tz"] == "1;1;0;0"


@round_trip("update_access_timezone", uid=2, mon_start="08:00", mon_end="11:59")
def update_access_timezone_stores_it(rig: Rig, command: Dict[str, Any]) -> None:
    period = records(rig, "AccTimeZone")[("2",)]
    assert (period["monstart"], period["monend"], period["sunend"]) == ("800", "1159", "0")


@round_trip("update_access_holiday", uid=1, name="Holiday", start="11-23", end="1125", timezone=1)
def update_access_holiday_stores_it(rig: Rig, command: Dict[str, Any]) -> None:
    holiday = records(rig, "AccHoliday")[("1",)]
    assert (holiday["holidayname"], holiday["startdate"], holiday["enddate"]) == (
        "Holiday",
        "1123",
        "1125",
    )


@round_trip("update_access_combination", uid=1, group1=1, group2=2)
def update_access_combination_stores_it(rig: Rig, command: Dict[str, Any]) -> None:
    combination = records(rig, "AccUnLockComb")[("1",)]
    assert (combination["group1"], combination["group2"], combination["group3"]) == ("1", "2", "0")


@round_trip("update_blacklist", id_num="11010119900307001X")
def update_blacklist_stores_it(rig: Rig, command: Dict[str, Any]) -> None:
    assert ("11010119900307001X",) in records(rig, "Blacklist")


# DATA DELETE


@round_trip("delete_user", pin="3")
def delete_user_removes_user_and_templates(rig: Rig, command: Dict[str, Any]) -> None:
    state = rig.device.state
    assert "3" not in state.users and not any(t.pin == "3" for t in state.templates.values())


@round_trip("delete_fingerprint", pin="1", fid=6)
def delete_fingerprint_removes_the_finger(rig: Rig, command: Dict[str, Any]) -> None:
    assert ("1", 1, 6, 0) not in rig.device.state.templates
    assert ("2", 1, 6, 0) in rig.device.state.templates


def _classic_face(rig: Rig) -> None:
    face = Template("2", 2, index=0, data=b"face")
    rig.device.state.templates[face.key] = face


@round_trip("delete_face", prepare=_classic_face, pin="2")
def delete_face_removes_classic_faces(rig: Rig, command: Dict[str, Any]) -> None:
    templates = rig.device.state.templates
    assert ("2", 2, 0, 0) not in templates and ("2", 9, 0, 0) in templates


def _vein(rig: Rig) -> None:
    for fid in (2, 3):
        vein = Template("1", 7, no=fid, data=b"vein")
        rig.device.state.templates[vein.key] = vein


@round_trip("delete_finger_vein", prepare=_vein, pin="1", fid=2)
def delete_finger_vein_removes_that_finger(rig: Rig, command: Dict[str, Any]) -> None:
    templates = rig.device.state.templates
    assert ("1", 7, 2, 0) not in templates and ("1", 7, 3, 0) in templates


@round_trip("delete_biodata", pin="2", type=9)
def delete_biodata_removes_that_type(rig: Rig, command: Dict[str, Any]) -> None:
    templates = rig.device.state.templates
    assert ("2", 9, 0, 0) not in templates and ("2", 1, 6, 0) in templates


def _photos(rig: Rig) -> None:
    users = rig.device.state.users
    users["1"] = replace(users["1"], photo=JPEG)
    rig.device.state.biophotos[("1", "9")] = JPEG


@round_trip("delete_userpic", prepare=_photos, pin="1")
def delete_userpic_removes_the_photo(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.state.users["1"].photo is None
    assert ("1", "9") in rig.device.state.biophotos


@round_trip("delete_biophoto", prepare=_photos, pin="1")
def delete_biophoto_removes_the_photo(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.state.biophotos == {} and rig.device.state.users["1"].photo == JPEG


def _messages(rig: Rig) -> None:
    for uid in ("5", "6"):
        records(rig, "SMS")[(uid,)] = {"uid": uid, "msg": "hi", "tag": "254"}
        records(rig, "USER_SMS")[("1", uid)] = {"pin": "1", "uid": uid}


@round_trip("delete_sms", prepare=_messages, uid=5)
def delete_sms_removes_the_message_and_its_links(rig: Rig, command: Dict[str, Any]) -> None:
    assert list(records(rig, "SMS")) == [("6",)]
    assert list(records(rig, "USER_SMS")) == [("1", "6")]


def _workcodes(rig: Rig) -> None:
    for code in ("8", "9"):
        records(rig, "WORKCODE")[(code,)] = {"pin": code, "code": code, "name": ""}


@round_trip("delete_workcode", prepare=_workcodes, code="8")
def delete_workcode_removes_it(rig: Rig, command: Dict[str, Any]) -> None:
    assert list(records(rig, "WORKCODE")) == [("9",)]


def _pictures(rig: Rig) -> None:
    for index in ("1", "2"):
        records(rig, "ADPIC")[(index,)] = {"index": index, "content": "AAAA"}


@round_trip("delete_adpic", prepare=_pictures, index=1)
def delete_adpic_removes_it(rig: Rig, command: Dict[str, Any]) -> None:
    assert list(records(rig, "ADPIC")) == [("2",)]


# files, SHELL, UPGRADE


@round_trip("get_file", path="attlog.dat")
def get_file_sends_the_files_bytes(rig: Rig, command: Dict[str, Any]) -> None:
    expected = rig.device.files()[HOME + "attlog.dat"]
    assert expected.count(b"\n") == 4
    reply = command["reply"]
    assert (reply["file_name"], reply["size"]) == ("attlog.dat", len(expected))
    assert base64.b64decode(reply["content"]) == expected


def _readme(rig: Rig) -> None:
    rig.put_file("docs/readme.txt", b"hello device\n" * 10)


@round_trip("put_file", prepare=_readme, url="file/docs/readme.txt", path="/mnt/readme.txt")
def put_file_saves_the_download(rig: Rig, command: Dict[str, Any]) -> None:
    assert command["reply"]["size"] == 130
    assert rig.device.state.files["/mnt/readme.txt"] == b"hello device\n" * 10


@round_trip("shell", command="ls -l /mnt/mtdblock")
def shell_sends_the_output(rig: Rig, command: Dict[str, Any]) -> None:
    reply = command["reply"]
    output = base64.b64decode(reply["output"]).decode()
    assert (reply["file_name"], reply["exit_status"]) == ("shellout.txt", 0)
    assert output.splitlines()[0].endswith(" attlog.dat")
    assert f"{len(rig.device.files()[HOME + 'user.dat']):>8} user.dat" in output


@round_trip(
    "upgrade", url="b64/firmware/emfw.cfg", checksum=md5(FIRMWARE), size=len(FIRMWARE), method=1
)
def upgrade_installs_the_firmware(rig: Rig, command: Dict[str, Any]) -> None:
    assert rig.device.state.firmware == FIRMWARE
    assert rig.device.needs_handshake  # it restarts into the new firmware


# remote enrollment: the new template reaches the server too


@round_trip("enroll_fp", pin="9", fid=5)
def enroll_fp_uploads_the_new_fingerprint(rig: Rig, command: Dict[str, Any]) -> None:
    template = rig.device.state.templates[("9", 1, 5, 0)]
    [finger] = rig.stored("fingerprints", pin="9")
    assert finger["fid"] == "5"
    assert base64.b64decode(finger["template"]) == template.data
    assert [u["pin"] for u in rig.stored("users", pin="9")] == ["9"]


@round_trip("enroll_mf", pin="1")
def enroll_mf_uploads_the_new_card(rig: Rig, command: Dict[str, Any]) -> None:
    card = rig.device.state.users["1"].card
    [user] = rig.stored("users", pin="1")
    assert user["card"] == card and len(card) == 10


@round_trip("enroll_bio", type=9, pin="3", card_no="4242")
def enroll_bio_uploads_the_new_face(rig: Rig, command: Dict[str, Any]) -> None:
    template = rig.device.state.templates[("3", 9, 0, 0)]
    [face] = rig.stored("biodata", pin="3")
    assert (face["type"], face["major_ver"]) == ("9", "58")
    assert base64.b64decode(face["template"]) == template.data
    assert rig.stored("users", pin="3")[0]["card"] == "4242"


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_every_builder_kind_round_trips(rig: Rig, kind: str) -> None:
    """Queued, delivered, executed, replied, read back as succeeded, and it did its job."""
    case = ROUND_TRIPS.get(kind)
    assert case is not None, f"no round trip for command kind {kind!r}: add one to ROUND_TRIPS"
    if case.prepare is not None:
        case.prepare(rig)
    command = rig.round_trip(case.body)
    assert command["status"] == "succeeded", command
    assert command["kind"] == kind
    assert command["return_code"] is not None and command["completed"]
    case.check(rig, command)


# -- kinds the service builds itself --------------------------------------------


@pytest.mark.parametrize("method", [1, 2])
def test_upgrade_with_a_file_of_the_file_area(rig: Rig, method: int) -> None:
    """The server computes MD5 and size; method 1 serves base64, method 2 the file as is."""
    command = rig.round_trip({"kind": "upgrade", "file": "firmware/emfw.cfg", "method": method})
    assert command["status"] == "succeeded", command
    assert f"checksum={md5(FIRMWARE)}" in command["command"]
    assert rig.device.state.firmware == FIRMWARE


def _server_users(rig: Rig) -> None:
    """Two users that only the server has, with a fingerprint and classic faces."""
    for pin, name in (("100", "Ann"), ("101", "Bob")):
        body = {
            "name": name,
            "fingerprints": [{"fid": 1, "template": TEMPLATE}],
            "faces": [{"fid": fid, "template": OTHER_TEMPLATE} for fid in range(3)],
            "devices": [],  # on the server only
        }
        rig.run(rig.app.users.put(pin, body))


def test_sync_data_users_makes_the_device_hold_the_servers_users(rig: Rig) -> None:
    _server_users(rig)
    rig.run(rig.app.users.put("200", {"name": "Cy", "devices": []}))
    rig.device.state.users["77"] = replace(rig.device.state.users["1"], pin="77")  # not on server
    command = rig.round_trip({"kind": "sync_data", "table": "USERINFO"})
    assert command["status"] == "succeeded", command
    assert "Action=SyncData\tTableName=USERINFO\tRecordCount=7" in command["command"]
    assert command["reply"]["processed"] == 7
    users = rig.device.state.users
    assert sorted(users, key=int) == ["1", "2", "3", "4", "100", "101", "200"]
    assert users["100"].name == "Ann"


@pytest.mark.parametrize(("table", "kind", "count"), [("FINGERTMP", 1, 6), ("FACE", 2, 6)])
def test_sync_data_templates_replace_the_devices(
    rig: Rig, table: str, kind: int, count: int
) -> None:
    _server_users(rig)
    rig.round_trip({"kind": "sync_data", "table": "USERINFO"})  # the owners first
    command = rig.round_trip({"kind": "sync_data", "table": table})
    assert command["status"] == "succeeded", command
    assert command["reply"]["processed"] == count
    held = sorted(
        (t.pin, t.no if kind == 1 else t.index)
        for t in rig.device.state.templates.values()
        if t.type == kind
    )
    if kind == 1:
        assert held == [("1", 6), ("100", 1), ("101", 1), ("2", 6), ("3", 6), ("4", 6)]
    else:
        assert held == [("100", 0), ("100", 1), ("100", 2), ("101", 0), ("101", 1), ("101", 2)]


def test_sync_data_append_adds_to_the_device(rig: Rig) -> None:
    _server_users(rig)
    rig.device.state.users["77"] = replace(rig.device.state.users["1"], pin="77")
    command = rig.round_trip({"kind": "sync_data", "table": "USERINFO", "action": "AppendData"})
    assert command["status"] == "succeeded", command
    assert command["command"].endswith("\tAction=AppendData")
    assert command["reply"]["size"] > 0  # AppendData answers the pack's size
    assert {"77", "100", "101"} <= set(rig.device.state.users)


# -- more of each family ---------------------------------------------------------


def test_put_file_unpacks_a_tgz_into_the_folder(rig: Rig) -> None:
    pack = tgz({"main.cfg": b"a=1\n", "lang/en.txt": b"hello"})
    rig.put_file("fw/X938/main.tgz", pack)
    command = rig.round_trip({"kind": "put_file", "url": "file/fw/X938/main.tgz", "path": "/mnt/"})
    assert command["status"] == "succeeded", command
    assert command["reply"]["size"] == len(pack)
    assert rig.device.state.files["/mnt/main.cfg"] == b"a=1\n"
    assert rig.device.state.files["/mnt/lang/en.txt"] == b"hello"


def test_put_file_sync_data_with_a_pack_given_by_url(rig: Rig) -> None:
    lines = [
        "C:1:DATA UPDATE USERINFO PIN=1\tName=One",
        "C:2:DATA UPDATE USERINFO PIN=500\tName=Five hundred",
    ]
    rig.put_file("packs/manual.tgz", tgz({"user.dat": "\n".join(lines).encode()}))
    body = {
        "kind": "put_file",
        "url": "file/packs/manual.tgz",
        "path": "/mnt/mtdblock/",
        "action": "SyncData",
        "table": "USERINFO",
        "record_count": 2,
    }
    command = rig.round_trip(body)
    assert command["status"] == "succeeded", command
    assert command["reply"] == {**command["reply"], "processed": 2, "size": 2}
    assert sorted(rig.device.state.users) == ["1", "500"]
    assert rig.device.state.users["1"].name == "One"


def test_a_file_put_then_got_comes_back_byte_for_byte(rig: Rig) -> None:
    content = bytes(range(256)) * 3
    rig.put_file("blob.bin", content)
    assert rig.round_trip({"kind": "put_file", "url": "file/blob.bin"})["status"] == "succeeded"
    command = rig.round_trip({"kind": "get_file", "path": "/mnt/mtdblock/blob.bin"})
    assert command["status"] == "succeeded", command
    assert base64.b64decode(command["reply"]["content"]) == content


def test_shell_output_of_cat_and_unknown_programs(rig: Rig) -> None:
    cat = rig.round_trip({"kind": "shell", "command": "cat options.cfg"})
    output = base64.b64decode(cat["reply"]["output"])
    assert output == rig.device.files()[HOME + "options.cfg"]
    missing = rig.round_trip({"kind": "shell", "command": "reboot-now"})
    assert missing["status"] == "succeeded"  # it ran; its exit status says how
    assert missing["reply"]["exit_status"] == 127
    assert base64.b64decode(missing["reply"]["output"]) == b"sh: reboot-now: not found\n"


def test_biophoto_by_url_posts_back_the_template(rig: Rig) -> None:
    rig.put_file("photos/face-3.jpg", JPEG)
    body = {"kind": "update_biophoto", "pin": "3", "type": 9}
    command = rig.round_trip({**body, "url": "file/photos/face-3.jpg", "post_back_tmp": 1})
    assert command["status"] == "succeeded", command
    assert rig.device.state.biophotos[("3", "9")] == JPEG
    [face] = rig.stored("biodata", pin="3")
    assert face["type"] == "9"


def test_enroll_overwrite_replaces_the_template(rig: Rig) -> None:
    old = rig.device.state.templates[("1", 1, 6, 0)].data
    command = rig.round_trip({"kind": "enroll_fp", "pin": "1", "fid": 6, "overwrite": 1})
    assert command["status"] == "succeeded", command
    new = rig.device.state.templates[("1", 1, 6, 0)].data
    assert new != old
    [finger] = rig.stored("fingerprints", pin="1")
    assert base64.b64decode(finger["template"]) == new


# -- deliberate failures: the documented codes -------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "meaning"),
    [
        ({"kind": "get_file", "path": "no/such.file"}, "-2", "does not exist"),
        ({"kind": "enroll_fp", "pin": "1", "fid": 6}, "2", "already exist"),
        ({"kind": "enroll_bio", "type": 9, "pin": "2"}, "2", "already exist"),
        ({"kind": "enroll_bio", "type": 4, "pin": "2"}, "-1002", "Not supported"),
        ({"kind": "update_fingerprint", "pin": "99", "fid": 1, "template": TEMPLATE}, "-10", ""),
        ({"kind": "update_user_sms", "pin": "99", "uid": 1}, "-10", "does not exist"),
        ({"kind": "query_users", "pin": "99"}, "-10", "does not exist"),
        ({"kind": "put_file", "url": "file/no/such.bin"}, "-1008", "server data"),
        (
            {"kind": "upgrade", "url": "b64/firmware/emfw.cfg", "checksum": "0" * 32, "size": 9},
            "-3",
            "Reading or writing",
        ),
        (
            {"kind": "upgrade", "url": "firmware/none.cfg", "checksum": "a" * 32, "size": 1},
            "-1008",
            "server data",
        ),
        ({"command": "FORMAT DISK"}, "-1002", "Not supported"),
    ],
)
def test_failures_come_back_with_their_code(
    rig: Rig, body: Dict[str, Any], code: str, meaning: str
) -> None:
    command = rig.round_trip(body)
    assert (command["status"], command["return_code"]) == ("failed", code), command
    assert meaning in command["reply"]["meaning"]


def test_upgrade_whose_file_does_not_match_changes_nothing(rig: Rig) -> None:
    body = {"kind": "upgrade", "url": "firmware/emfw.cfg", "checksum": md5(b"other")}
    command = rig.round_trip({**body, "size": len(FIRMWARE), "method": 2})
    assert command["return_code"] == "-3"
    assert rig.device.state.firmware is None and not rig.device.needs_handshake


# -- delivery: batches, resends, expiry ----------------------------------------------


def test_many_commands_go_over_several_polls_within_the_budget(tmp_path: Any) -> None:
    rig = Rig(tmp_path, CommandSettings(budget=400))
    queued = [
        rig.queue({"kind": "update_user", "pin": str(n), "name": f"Batch user {n:02d}" * 2})
        for n in range(200, 215)
    ]
    texts = {c["id"]: c["command"] for c in queued}
    polls: List[List[str]] = []
    while len(polls) < 20:
        replies = rig.poll()
        if not replies:
            break
        polls.append([reply.id for reply in replies])
    assert len(polls) > 1
    assert sorted(i for ids in polls for i in ids) == sorted(texts)
    for ids in polls:
        size = len("\n".join(f"C:{i}:{texts[i]}" for i in ids).encode())
        assert size <= 400 or len(ids) == 1
    assert [i for ids in polls for i in ids] == [c["id"] for c in queued]  # FIFO
    assert all(rig.get(c["id"])["status"] == "succeeded" for c in queued)
    assert {str(n) for n in range(200, 215)} <= set(rig.device.state.users)


def test_the_default_budget_is_64_kib(tmp_path: Any) -> None:
    rig = Rig(tmp_path)
    photo = base64.b64encode(bytes(range(256)) * 60).decode()  # ~20 KiB a command
    queued = [rig.queue({"kind": "update_userpic", "pin": "1", "content": photo}) for _ in range(5)]
    per_poll = []
    while True:
        replies = rig.poll()
        if not replies:
            break
        per_poll.append(len(replies))
    assert per_poll == [3, 2]  # 3 x ~20 KiB fit in 64 KiB, a fourth does not
    assert all(rig.get(c["id"])["status"] == "succeeded" for c in queued)


def test_a_lost_delivery_is_sent_again_after_the_resend_timeout(tmp_path: Any) -> None:
    settings = CommandSettings(resend_after=60, attempts=3)
    rig = Rig(tmp_path, settings)
    command = rig.queue({"kind": "unlock"})
    assert f"C:{command['id']}:AC_UNLOCK".encode() in rig.lost_poll()
    assert rig.poll() == []  # the server waits for the reply
    assert rig.get(command["id"])["status"] == "sent"
    rig.server.reactor.advance(settings.resend_after + 1)
    [reply] = rig.poll()
    assert reply.id == command["id"]
    done = rig.get(command["id"])
    assert (done["status"], done["attempts"]) == ("succeeded", 2)
    assert rig.device.state.unlocks == 1


def test_a_command_never_answered_expires(tmp_path: Any) -> None:
    settings = CommandSettings(resend_after=60, attempts=2)
    rig = Rig(tmp_path, settings)
    command = rig.queue({"kind": "unlock"})
    for _ in range(settings.attempts):
        assert command["id"].encode() in rig.lost_poll()
        rig.server.reactor.advance(settings.resend_after + 1)
    assert rig.lost_poll() == b"OK"  # no further attempt
    expired = rig.run(rig.app.commands.expire())
    assert [c.id for c in expired] == [command["id"]]
    done = rig.get(command["id"])
    assert (done["status"], done["attempts"]) == ("expired", 2)
    assert rig.poll() == [] and rig.device.state.unlocks == 0


# -- --allow-commands -------------------------------------------------------------------

GATED: List[Tuple[str, Dict[str, Any]]] = [
    ("shell", {"kind": "shell", "command": "ls"}),
    ("files", {"kind": "get_file", "path": "attlog.dat"}),
    ("files", {"kind": "put_file", "url": "file/firmware/emfw.cfg"}),
    ("files", {"kind": "sync_data", "table": "USERINFO"}),
    ("files", {"command": "GetFile attlog.dat"}),
    ("upgrade", {"kind": "upgrade", "file": "firmware/emfw.cfg"}),
    ("upgrade", {"kind": "upgrade", "url": "x.cfg", "checksum": "ab", "size": 1}),
]


@pytest.mark.parametrize(("family", "body"), GATED)
def test_disabled_families_are_refused_with_403(
    tmp_path: Any, family: str, body: Dict[str, Any]
) -> None:
    rig = Rig(tmp_path, CommandSettings(allowed=frozenset({"standard"})))
    status, answer = rig.submit(body)
    assert status == 403, answer
    assert f"{family} commands are disabled" in answer["error"]
    assert rig.poll() == []
    assert rig.round_trip({"kind": "unlock"})["status"] == "succeeded"  # standard ones go


@pytest.mark.parametrize(("family", "body"), GATED)
def test_enabled_families_are_delivered(tmp_path: Any, family: str, body: Dict[str, Any]) -> None:
    rig = Rig(tmp_path, CommandSettings(allowed=parse_allowed_families(family)))
    status, answer = rig.submit(body)
    assert status == 201, answer
    assert answer["family"] == family
    others = [f for f in ("shell", "files", "upgrade") if f != family]
    for other_family, other in GATED:
        if other_family in others:
            assert rig.submit(other)[0] == 403
    rig.poll()
    assert rig.get(answer["id"])["status"] in ("succeeded", "failed")  # answered either way


def test_a_refused_sync_data_writes_no_pack(tmp_path: Any) -> None:
    rig = Rig(tmp_path, CommandSettings(allowed=frozenset({"standard"})))
    assert rig.submit({"kind": "sync_data", "table": "USERINFO"})[0] == 403
    assert not (rig.files / "packs").exists()


# -- text in the device's codec -------------------------------------------------------


def test_a_chinese_device_gets_and_sends_names_in_its_codec(tmp_path: Any) -> None:
    """Language 83: commands arrive in GB18030, uploads and files go back in GB2312."""
    rig = Rig(tmp_path, CommandSettings(allowed=ALL_FAMILIES), encoding="gb2312")
    assert rig.round_trip({"kind": "update_user", "pin": "301", "name": "李伟"})["status"] == (
        "succeeded"
    )
    assert rig.device.state.users["301"].name == "李伟"
    assert rig.round_trip({"kind": "query_users", "pin": "301"})["status"] == "succeeded"
    assert rig.stored("users", pin="301")[0]["name"] == "李伟"
    command = rig.round_trip({"kind": "get_file", "path": "user.dat"})
    assert "Name=李伟\t" in base64.b64decode(command["reply"]["content"]).decode("gb2312")


# -- server-side bugs these round trips found (fixed) ------------------------------------


def test_query_attlog_counts_punches_the_server_already_had(rig: Rig) -> None:
    sent = rig.device.stats.sent["ATTLOG"]
    command = rig.round_trip({"kind": "query_attlog", **DAY})
    assert command["status"] == "succeeded"
    assert rig.device.stats.sent["ATTLOG"] - sent == 3  # Count=3 ... CmdId=<id>
    assert command["reply"]["records"] == 3


def test_sync_data_users_keep_verify_tz_and_vice_card(rig: Rig) -> None:
    body = {"name": "V", "verify": 15, "tz": "0000000100000000", "vice_card": "55"}
    rig.run(rig.app.users.put("300", {**body, "devices": []}))
    assert rig.round_trip({"kind": "sync_data", "table": "USERINFO"})["status"] == "succeeded"
    user = rig.device.state.users["300"]
    assert (user.verify, user.timezones, user.vice_card) == (15, "0000000100000000", "55")


def test_sync_data_pack_is_in_the_devices_codec(tmp_path: Any) -> None:
    rig = Rig(tmp_path, CommandSettings(allowed=ALL_FAMILIES), encoding="gb2312")
    rig.run(rig.app.users.put("302", {"name": "张三", "devices": []}))
    assert rig.round_trip({"kind": "sync_data", "table": "USERINFO"})["status"] == "succeeded"
    assert rig.device.state.users["302"].name == "张三"
