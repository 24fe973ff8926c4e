"""
Layer 2: the command plane and server-side users through the device tree,
in memory: what reaches devices on their polls, and in which form.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from typing import Any, Dict, List

import pytest

from pushd.commands import CommandRefused, CommandSettings, parse_allowed_families
from pushd.errors import ProtocolError, UnsupportedRequest
from pushd.model import DeviceUpdate
from pushd.testing import TestServer
from tests.test_web_iclock import handshake, make_server, send, settle

TEMPLATE = base64.b64encode(b"\x01" * 48).decode()


def poll(server: TestServer, sn: str) -> List[str]:
    reply = send(server, "GET", f"/iclock/getrequest?SN={sn}")
    assert reply.status == 200
    return [] if reply.body == b"OK" else reply.body.decode().split("\n")


def submit(server: TestServer, sn: str, body: Dict[str, Any]) -> Any:
    return settle(server, server.app.commands.submit(sn, body))


def test_commands_are_delivered_fifo_once_as_c_lines(server: TestServer) -> None:
    handshake(server, "Q1")
    first = submit(server, "Q1", {"kind": "info"})
    second = submit(server, "Q1", {"command": "SET OPTION Delay=20"})
    assert poll(server, "Q1") == [f"C:{first.id}:INFO", f"C:{second.id}:SET OPTION Delay=20"]
    assert poll(server, "Q1") == []
    assert len(first.id) == 16 and first.id.isalnum()


def test_a_poll_carries_commands_up_to_the_byte_budget(tmp_path: Any) -> None:
    server = make_server(tmp_path, config={"commands": CommandSettings(budget=200)})
    handshake(server, "Q2")
    for n in range(6):
        submit(server, "Q2", {"kind": "update_user", "pin": str(n), "name": "x" * 40})
    sizes = []
    while True:
        lines = poll(server, "Q2")
        if not lines:
            break
        sizes.append(len(lines))
        assert len("\n".join(lines).encode()) <= 200 or len(lines) == 1
    assert sum(sizes) == 6 and len(sizes) > 1


def test_unanswered_commands_are_resent_then_expire(tmp_path: Any) -> None:
    settings = CommandSettings(resend_after=60, attempts=2)
    server = make_server(tmp_path, config={"commands": settings})
    handshake(server, "Q3")
    command = submit(server, "Q3", {"kind": "reboot"})
    assert poll(server, "Q3") == [f"C:{command.id}:REBOOT"]
    assert poll(server, "Q3") == []  # waiting for the reply
    server.reactor.advance(61)
    assert poll(server, "Q3") == [f"C:{command.id}:REBOOT"]  # delivered again
    server.reactor.advance(61)
    assert poll(server, "Q3") == []  # no third attempt
    [expired] = settle(server, server.app.commands.expire())
    assert (expired.id, expired.status, expired.attempts) == (command.id, "expired", 2)


def test_a_reply_completes_the_command_with_its_meaning(server: TestServer) -> None:
    handshake(server, "Q4")
    command = submit(server, "Q4", {"kind": "clear_log"})
    poll(server, "Q4")
    body = f"ID={command.id}&Return=-1002&CMD=CLEAR LOG\n".encode()
    assert send(server, "POST", "/iclock/devicecmd?SN=Q4", body).body == b"OK"
    done = settle(server, server.app.commands.get(command.id))
    assert (done.status, done.return_code) == ("failed", "-1002")
    assert "Not supported" in done.reply["meaning"]


def test_check_resets_the_stamps_so_the_device_uploads_again(server: TestServer) -> None:
    handshake(server, "Q5")
    send(server, "POST", "/iclock/cdata?SN=Q5&table=ATTLOG&Stamp=900", b"1\t2020-01-01 00:00:00")
    submit(server, "Q5", {"kind": "check"})
    server.app.registry._devices.clear()
    assert b"\nATTLOGStamp=0\n" in handshake(server, "Q5").body


def test_submit_refuses_unknown_devices_invalid_and_disabled_commands(server: TestServer) -> None:
    handshake(server, "Q6")
    with pytest.raises(UnsupportedRequest, match="unknown device NOPE"):
        submit(server, "NOPE", {"kind": "reboot"})
    with pytest.raises(ProtocolError, match="pin"):
        submit(server, "Q6", {"kind": "update_user", "pin": "1\t2"})
    with pytest.raises(ProtocolError):
        submit(server, "Q6", {"command": "INFO\nC:9:REBOOT"})
    with pytest.raises(ProtocolError, match='"command"'):
        submit(server, "Q6", {})
    with pytest.raises(CommandRefused, match="shell commands are disabled"):
        submit(server, "Q6", {"command": "SHELL ls"})
    assert poll(server, "Q6") == []


def test_allowed_families_parse_from_the_option() -> None:
    assert parse_allowed_families("standard") == {"standard"}
    assert parse_allowed_families("shell,files") == {"standard", "shell", "files"}
    assert parse_allowed_families("all") == {"standard", "shell", "files", "upgrade"}
    with pytest.raises(ValueError, match="unknown command family 'rm'"):
        parse_allowed_families("shell,rm")


def test_upgrade_computes_checksum_and_size_and_serves_the_file(tmp_path: Any) -> None:
    settings = CommandSettings(allowed=parse_allowed_families("upgrade"))
    server = make_server(tmp_path, config={"commands": settings})
    firmware = tmp_path / "files" / "firmware"
    firmware.mkdir(parents=True)
    (firmware / "emfw.cfg").write_bytes(b"\x7fELF" + bytes(range(256)) * 4)
    handshake(server, "U1")
    command = submit(server, "U1", {"kind": "upgrade", "file": "firmware/emfw.cfg", "method": 2})
    digest = hashlib.md5((firmware / "emfw.cfg").read_bytes()).hexdigest()
    assert command.command == f"UPGRADE type=1,checksum={digest},size=1028,url=firmware/emfw.cfg"
    served = send(server, "GET", "/iclock/file?SN=U1&url=firmware/emfw.cfg")
    assert served.status == 200 and served.body == (firmware / "emfw.cfg").read_bytes()
    method1 = submit(server, "U1", {"kind": "upgrade", "file": "firmware/emfw.cfg"})
    assert "url=b64/firmware/emfw.cfg" in method1.command
    encoded = send(server, "GET", "/iclock/file?SN=U1&url=b64/firmware/emfw.cfg")
    assert base64.b64decode(encoded.body) == (firmware / "emfw.cfg").read_bytes()
    with pytest.raises(ProtocolError, match="no firmware file"):
        submit(server, "U1", {"kind": "upgrade", "file": "firmware/missing.cfg"})


@pytest.mark.parametrize(
    "target",
    [
        "/iclock/file/../pushd.sqlite3",
        "/iclock/file?SN=F1&url=../pushd.sqlite3",
        "/iclock/file?SN=F1&url=/etc/passwd",
        "/iclock/file?SN=F1&url=http://evil/iclock/file/../../pushd.sqlite3",
        "/iclock/file/.hidden",
        "/iclock/file/packs",
    ],
)
def test_only_files_under_the_file_area_are_served(
    server: TestServer, tmp_path: Any, target: str
) -> None:
    handshake(server, "F1")
    (tmp_path / "files" / "packs").mkdir(parents=True)
    (tmp_path / "files" / ".hidden").write_text("secret")
    reply = send(server, "GET", target)
    assert reply.status == 404


def test_file_requests_naming_a_pending_device_are_refused(tmp_path: Any) -> None:
    server = make_server(tmp_path, registration="approve")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.bin").write_bytes(b"x")
    assert send(server, "GET", "/iclock/file?SN=STRANGER&url=a.bin").status == 401


def test_sync_data_builds_a_pack_of_stored_users(tmp_path: Any) -> None:
    settings = CommandSettings(allowed=parse_allowed_families("files"))
    server = make_server(tmp_path, config={"commands": settings})
    handshake(server, "P1")
    send(
        server,
        "POST",
        "/iclock/cdata?SN=P1&table=OPERLOG",
        b"USER PIN=1\tName=A\nUSER PIN=2\tName=B",
    )
    command = submit(server, "P1", {"kind": "sync_data", "table": "USERINFO"})
    url, path, action, table, count = command.command[len("PutFile ") :].split("\t")
    assert (path, action, table, count) == (
        "/mnt/mtdblock/",
        "Action=SyncData",
        "TableName=USERINFO",
        "RecordCount=2",
    )
    pack = send(server, "GET", "/iclock/" + url)
    assert pack.status == 200
    with tarfile.open(fileobj=io.BytesIO(pack.body), mode="r:gz") as archive:
        [member] = archive.getmembers()
        lines = archive.extractfile(member).read().decode().splitlines()  # type: ignore[union-attr]
    assert lines == [
        "C:1:DATA UPDATE USERINFO PIN=1\tName=A",
        "C:2:DATA UPDATE USERINFO PIN=2\tName=B",
    ]


# -- users once, every device ----------------------------------------------------


def _hybrid(server: TestServer, sn: str, data: str) -> None:
    handshake(server, sn)
    body = f"MultiBioDataSupport={data},MultiBioPhotoSupport=0:0:0:0:0:0:0:0:0:1".encode()
    assert send(server, "POST", f"/iclock/cdata?SN={sn}&table=options", body).body == b"OK"


def test_a_user_put_on_the_server_reaches_each_device_in_its_form(server: TestServer) -> None:
    _hybrid(server, "CLASSIC", "0:0:0:0:0:0:0:0:0:0")
    _hybrid(server, "UNIFIED", "0:1:0:0:0:0:0:0:0:1")
    body = {
        "name": "Ann",
        "card": "123",
        "fingerprints": [{"fid": 6, "template": TEMPLATE}],
        "biodata": [{"type": 1, "no": 6, "template": TEMPLATE, "major_ver": 10}],
        "photo": TEMPLATE,
    }
    result = settle(server, server.app.users.put("42", body))
    assert result["user"]["name"] == "Ann" and len(result["user"]["fingerprints"]) == 1
    classic = poll(server, "CLASSIC")
    unified = poll(server, "UNIFIED")
    assert any("DATA UPDATE USERINFO PIN=42\tName=Ann" in line for line in classic)
    assert any("DATA UPDATE FINGERTMP PIN=42\tFID=6" in line for line in classic)
    assert not any("BIODATA" in line for line in classic)
    assert any("DATA UPDATE BIODATA Pin=42\tNo=6" in line for line in unified)
    assert not any("FINGERTMP" in line for line in unified)
    assert all(any("USERPIC PIN=42" in line for line in lines) for lines in (classic, unified))
    assert len(result["commands"]) == len(classic) + len(unified)


def test_a_user_can_go_to_named_devices_only(server: TestServer) -> None:
    handshake(server, "D1")
    handshake(server, "D2")
    settle(server, server.app.users.put("7", {"name": "Bo", "devices": ["D2"]}))
    assert poll(server, "D1") == [] and len(poll(server, "D2")) == 1
    with pytest.raises(ProtocolError, match="unknown device"):
        settle(server, server.app.users.put("7", {"devices": ["NOPE"]}))
    with pytest.raises(ProtocolError, match="unknown user field"):
        settle(server, server.app.users.put("7", {"nmae": "typo"}))


def test_deleting_a_user_removes_it_everywhere(server: TestServer) -> None:
    handshake(server, "E1")
    handshake(server, "E2")
    settle(server, server.app.users.put("8", {"name": "Cy"}))
    poll(server, "E1")
    poll(server, "E2")
    result = settle(server, server.app.users.delete("8"))
    assert result["deleted"] is True
    assert [poll(server, sn)[0].split(":", 2)[2] for sn in ("E1", "E2")] == [
        "DATA DELETE USERINFO PIN=8"
    ] * 2
    assert settle(server, server.app.users.get("8")) is None


def test_enrollments_are_copied_within_a_sync_group(tmp_path: Any) -> None:
    server = make_server(tmp_path, config={"sync_groups": ("hq",)})
    for sn in ("G1", "G2", "G3"):
        handshake(server, sn)
    for sn, group in (("G1", "hq"), ("G2", "hq"), ("G3", "branch")):
        settle(server, server.app.registry.update(sn, DeviceUpdate(group=group)))
    body = f"USER PIN=5\tName=Dee\nFP PIN=5\tFID=1\tSize={len(TEMPLATE)}\tValid=1\tTMP={TEMPLATE}"
    assert send(server, "POST", "/iclock/cdata?SN=G1&table=OPERLOG", body.encode()).body == b"OK: 2"
    copied = poll(server, "G2")
    assert [line.split(":", 2)[2].split(" ")[2] for line in copied] == ["USERINFO", "FINGERTMP"]
    assert poll(server, "G1") == [] and poll(server, "G3") == []
