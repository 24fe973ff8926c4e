"""
Layer 2: PUSH 3.x terminals beside 2.x ones: the registration flow, the
token, real-time events and table uploads stored in the same model, the
server time, 3.x commands, remote verification; the real SenseFace captures.
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict

from pushd.model import DeviceUpdate
from pushd.protocol.push3 import decode_time
from pushd.registration import CODE, SESSION
from pushd.testing import TestServer
from tests.test_web_iclock import items, make_server, replay, send, settle
from tests.vectors import vector

SN = "VGU6251500098"
HANDSHAKE = f"/iclock/cdata?SN={SN}&options=all&pushver=3.1.2&DeviceType=acc&PushOptionsFlag=1"


def registered(server: TestServer) -> Dict[str, str]:
    assert send(server, "GET", HANDSHAKE).body == b"OK"
    reply = replay(server, vector("024"))
    assert reply.status == 200 and reply.body.startswith(b"RegistryCode=")
    assert reply.header("content-type") == b"application/push;charset=UTF-8"
    assert reply.header("set-cookie").startswith(b"JSESSIONID=")  # type: ignore[union-attr]
    return settle(server, server.store.get_device(SN)).info  # type: ignore[no-any-return]


def test_registration_then_configuration_with_a_session(server: TestServer) -> None:
    info = registered(server)
    device = settle(server, server.store.get_device(SN))
    assert device.device_type == "acc" and device.push_version == "3.1.2"
    assert device.options["~DeviceName"] == "SenseFace 3A"  # the capabilities, stored
    code = info[CODE]
    assert len(code) == 32 and code.isalnum()
    first = send(server, "POST", f"/iclock/push?SN={SN}")
    lines = dict(line.split("=", 1) for line in first.body.decode().split("\r\n"))
    assert lines["SessionID"] == settle(server, server.store.get_device(SN)).info[SESSION]
    again = replay(server, vector("024"))
    assert again.body == b"RegistryCode=" + code.encode()  # the same code on re-registration
    handshake = send(server, "GET", HANDSHAKE).body.decode()
    assert handshake.startswith(f"registry=ok\r\nRegistryCode={code}\r\n")


def test_a_pending_3x_device_is_told_406_but_its_capabilities_are_kept(tmp_path: Any) -> None:
    server = make_server(tmp_path, registration="approve")
    assert send(server, "GET", HANDSHAKE).body == b"OK"
    reply = replay(server, vector("024"))
    assert (reply.status, reply.body) == (406, b"406")
    device = settle(server, server.store.get_device(SN))
    assert device.state == "pending" and device.options["DeviceType"] == "acc"
    assert send(server, "POST", f"/iclock/push?SN={SN}").status == 401


def test_a_token_must_keep_matching_once_one_did(server: TestServer) -> None:
    info = registered(server)
    good = hashlib.md5(f"{info[CODE]}{SN}{info[SESSION]}".encode()).hexdigest()
    ping = f"/iclock/ping?SN={SN}"
    assert (
        send(server, "GET", ping, headers={"Cookie": "token=wrong"}).status == 200
    )  # not sticky yet
    assert send(server, "GET", ping, headers={"Cookie": f"token={good}"}).status == 200
    refused = send(server, "GET", ping, headers={"Cookie": "token=wrong"})
    assert (refused.status, refused.body) == (401, b"Device not authorized")
    stamp = "2026-02-23-16-20-51"
    timed = hashlib.md5(f"{info[CODE]}{SN}{stamp}".encode()).hexdigest()
    cookie = f"token={timed},timestamp={stamp}"  # the comma form of vector 025
    assert send(server, "GET", ping, headers={"Cookie": cookie}).status == 200


def test_real_time_events_become_events_and_punches(server: TestServer) -> None:
    registered(server)
    assert replay(server, vector("029")).body == b"OK"
    assert replay(server, vector("029")).body == b"OK"  # re-sent: stored once
    [event] = items(server, "events")
    assert (event["pin"], event["event"], event["door"], event["time"]) == (
        "1",
        "3",
        "1",
        "2026-02-09T18:23:02",
    )
    [punch] = items(server, "attendance")
    assert (punch["sn"], punch["pin"], punch["verify"]) == (SN, "1", "15")
    door = (
        b"time=2026-02-09 18:23:05\tpin=0\tcardno=0\teventaddr=1\tevent=200"
        b"\tinoutstatus=2\tverifytype=200\r\n"
    )
    send(server, "POST", f"/iclock/cdata?SN={SN}&table=rtlog", door)
    assert len(items(server, "attendance")) == 1  # a door event is no punch
    state = b"time=2026-02-09 18:23:06\tsensor=01\trelay=00\talarm=0000000000000000\tdoor=01\r\n"
    assert send(server, "POST", f"/iclock/cdata?SN={SN}&table=rtstate", state).body == b"OK"
    assert [s["sensor"] for s in items(server, "doorstates")] == ["01"]


def test_table_uploads_fill_the_same_model_as_2x(server: TestServer) -> None:
    registered(server)
    assert replay(server, vector("031")).body == b"user=3"
    assert [u["name"] for u in items(server, "users")] == ["Biseshar Borman", "tan", "g"]
    assert replay(server, vector("033")).body == b"biophoto=1"
    [photo] = items(server, "biophotos")
    assert (photo["pin"], photo["type"], photo["size_ok"]) == ("1", "9", True)


def test_the_server_time_is_encoded_for_the_device_zone(server: TestServer) -> None:
    registered(server)  # the test server's TimeZone is 480 minutes
    body = send(server, "GET", f"/iclock/rtdata?SN={SN}&type=time").body.decode()
    values = dict(part.split("=", 1) for part in body.split(","))
    assert values["ServerTZ"] == "+0800"
    utc = decode_time(int(values["DateTime"]))  # UTC; the device applies ServerTZ
    assert utc.strftime("%Y-%m-%d %H:%M:%S") == "2023-11-14 22:13:20"


def test_commands_for_a_3x_device_use_its_dialect(server: TestServer) -> None:
    registered(server)
    command = settle(server, server.app.commands.submit(SN, {"kind": "reboot"}))
    assert command.command.startswith("CONTROL DEVICE")
    user = settle(server, server.app.users.put("77", {"name": "Ivy", "devices": [SN]}))
    [queued] = user["commands"]
    assert queued["command"].startswith("DATA UPDATE user ")
    lines = send(server, "GET", f"/iclock/getrequest?SN={SN}").body.decode().split("\n")
    assert [line.split(":", 2)[1] for line in lines] == [command.id, queued["id"]]
    reply = f"ID={command.id}&Return=0&CMD=CONTROL DEVICE\n".encode()
    assert send(server, "POST", f"/iclock/devicecmd?SN={SN}", reply).body == b"OK"
    assert settle(server, server.app.commands.get(command.id)).status == "succeeded"


def test_remote_verification_goes_through_the_verifier(server: TestServer) -> None:
    registered(server)
    body = (
        b"time=2026-02-23 16:20:51\tpin=1\tcardno=0\taddrtype=2\teventaddr=1\tevent=0"
        b"\tinoutstatus=0\tverifytype=15"
    )
    reply = send(server, "POST", f"/iclock/cdata?SN={SN}&AuthType=device", body)
    assert reply.status == 200 and b"AUTH=SUCCEED" in reply.body
    assert [v["verdict"] for v in items(server, "verifications")] == ["allow"]


def test_2x_and_3x_devices_side_by_side(server: TestServer) -> None:
    registered(server)
    replay(server, vector("029"))
    replay(server, vector("009"))  # a 2.x terminal's punch
    assert sorted(p["sn"] for p in items(server, "attendance")) == ["CKJF202560310", SN]
    settle(server, server.app.registry.update(SN, DeviceUpdate(alias="door")))
