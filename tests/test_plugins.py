"""
The plugin API: the example plugin package enabled by name and exercised
over HTTP (in memory and under twistd), and plugins that fail contained.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any, Dict, Mapping

import pytest
import pytest_twisted
import treq
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater
from twisted.plugin import IPlugin
from twisted.web.resource import Resource
from zope.interface import implementer

from pushd.api import build_api
from pushd.config import Config, default_options
from pushd.interfaces import (
    IPushdPlugin,
    IResourcePlugin,
    ITableHandlerPlugin,
    IVerifierPlugin,
    Verdict,
)
from pushd.plugin_api import installed_plugins, select_plugins
from pushd.storage.memory import MemoryStore
from pushd.testing import TestServer
from tests.test_loopback import _free_port
from tests.test_web_iclock import send, settle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "pushd-example-plugin")
TOKEN = "plugin-test-token"


def example_plugin() -> Any:
    path = os.path.join(EXAMPLE, "pushd", "plugins", "pushd_example.py")
    spec = importlib.util.spec_from_file_location("pushd_example_for_tests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.example


def server_with(tmp_path: Any, *plugins: Any, **config: Any) -> TestServer:
    values: Dict[str, Any] = {
        "data_dir": str(tmp_path),
        "registration": "open",
        "options": default_options(0),
    }
    values.update(config)
    store = MemoryStore()
    server = TestServer(Config(**values), store, plugins=plugins)
    settle(server, store.open())
    return server


def api(server: TestServer) -> StubTreq:
    app = server.app
    return StubTreq(
        build_api(app, TOKEN, app.commands, app.users, server.reactor, app.api_extensions)
    )


def test_the_example_table_handler_acknowledges_after_storing(tmp_path: Any) -> None:
    server = server_with(tmp_path, example_plugin())
    body = (
        b"PIN=1\tTemp=36.6\tTime=2026-11-24 08:00:00\nPIN=2\tTemp=37.1\tTime=2026-11-24 08:01:00\n"
    )
    reply = send(server, "POST", "/iclock/cdata?SN=PLUG1&table=TEMPERATURE", body)
    assert (reply.status, reply.body) == (200, b"OK: 2")
    assert send(server, "POST", "/iclock/cdata?SN=PLUG1&table=temperature", body).body == b"OK: 2"
    client = api(server)
    headers = {b"Authorization": [f"Bearer {TOKEN}".encode()]}
    response = settle(
        server, client.get("http://api/api/ext/example/temperatures", headers=headers)
    )
    listing = json.loads(settle(server, client.content(response)))
    assert [item["fields"]["Temp"] for item in listing["items"]] == ["36.6", "37.1"]  # stored once
    refused = settle(server, client.get("http://api/api/ext/example/temperatures"))
    assert refused.code == 401


def test_a_malformed_plugin_table_is_a_400(tmp_path: Any) -> None:
    server = server_with(tmp_path, example_plugin())
    reply = send(server, "POST", "/iclock/cdata?SN=PLUG2&table=TEMPERATURE", b"no pairs here")
    assert (reply.status, reply.body) == (
        400,
        b"TEMPERATURE lines are key=value fields joined by TAB",
    )


@implementer(IPlugin, IPushdPlugin, ITableHandlerPlugin, IResourcePlugin)
class _Broken:
    name = "broken"
    description = "fails on purpose"
    tables = ("BOOM",)

    def handle(
        self, facade: Any, sn: str, table: str, params: Mapping[str, str], body: bytes
    ) -> Any:
        raise RuntimeError("bug in the plugin")

    def device_children(self, facade: Any) -> Mapping[bytes, Any]:
        return {b"boom": _Exploding()}

    def api_children(self, facade: Any) -> Mapping[bytes, Any]:
        return {}


class _Exploding(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        raise RuntimeError("bug in the plugin's resource")


def test_a_failing_plugin_is_contained_and_the_server_goes_on(tmp_path: Any) -> None:
    server = server_with(tmp_path, _Broken())
    table = send(server, "POST", "/iclock/cdata?SN=PLUG3&table=BOOM", b"x")
    assert (table.status, table.body) == (503, b"plugin broken failed")
    resource = send(server, "GET", "/iclock/boom?SN=PLUG3")
    assert (resource.status, resource.body) == (503, b"plugin broken failed")
    assert send(server, "GET", "/iclock/getrequest?SN=PLUG3").body == b"OK"


@implementer(IPlugin, IPushdPlugin, IResourcePlugin)
class _Squatter:
    name = "squatter"
    description = "wants a path pushd serves"

    def device_children(self, facade: Any) -> Mapping[bytes, Any]:
        return {b"cdata": Resource()}

    def api_children(self, facade: Any) -> Mapping[bytes, Any]:
        return {}


def test_a_plugin_cannot_take_a_path_pushd_serves(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="/iclock/cdata is taken"):
        server_with(tmp_path, _Squatter())


@implementer(IPlugin, IPushdPlugin, IVerifierPlugin)
class _Gate:
    name = "gate"
    description = "allows PIN 1 only"

    def verifier(self, facade: Any) -> Any:
        gate = self

        class Verifier:
            def verify(self, sn: str, data: bytes) -> Deferred[Verdict]:
                gate.config = facade.config
                allowed = b"PIN=1\t" in data + b"\t"
                return succeed(Verdict(allowed, "OK" if allowed else "Verify Failed"))

        return Verifier()


def test_a_verifier_plugin_decides_post_verify_data(tmp_path: Any) -> None:
    gate = _Gate()
    server = server_with(tmp_path, gate, plugin_config={"gate": {"site": "hq"}})
    target = "/iclock/cdata?SN=PLUG4&type=PostVerifyData"
    assert send(server, "POST", target, b"PIN=1").body == b"OK"
    assert send(server, "POST", target, b"PIN=2").body == b"Verify Failed"
    assert gate.config == {"site": "hq"}  # type: ignore[attr-defined]


def _twistd(*argv: str, cwd: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([EXAMPLE, ROOT]))
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "-n",
            "pushd",
            *argv,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=60,
    )


def test_installed_plugins_are_listed_and_enabled_by_name(tmp_path: Any) -> None:
    listed = _twistd("--help-plugins", cwd=str(tmp_path))
    assert listed.returncode == 0
    assert b"example: temperature readings" in listed.stdout
    unknown = _twistd("--plugin", "nope", cwd=str(tmp_path))
    assert unknown.returncode != 0
    assert b"--plugin: no plugin 'nope' is installed" in unknown.stdout + unknown.stderr


def test_the_plugin_namespace_finds_nothing_unknown_in_pushd_itself() -> None:
    assert "example" not in installed_plugins()  # only with the example on the path
    with pytest.raises(ValueError, match="no plugin 'example'"):
        select_plugins(["example"])


@pytest_twisted.ensureDeferred
async def test_twistd_serves_the_example_plugin_over_http(tmp_path: Any) -> None:
    port, api_port = _free_port(), _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([EXAMPLE, ROOT]))
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "-n",
            "pushd",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--api",
            f"tcp:{api_port}:interface=127.0.0.1",
            "--api-token",
            TOKEN,
            "--registration",
            "open",
            "--plugin",
            "example",
        ],
        cwd=str(tmp_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/iclock/cdata?SN=PLUG5&table=TEMPERATURE"
        reply = b""
        for _ in range(150):
            try:
                response = await treq.post(
                    url, b"PIN=7\tTemp=36.9\tTime=2026-11-24 09:00:00", timeout=5
                )
                reply = await response.content()
                break
            except Exception:
                await deferLater(reactor, 0.2, lambda: None)
        assert reply == b"OK: 1"
        listing = await treq.get(
            f"http://127.0.0.1:{api_port}/api/ext/example/temperatures?sn=PLUG5",
            headers={b"Authorization": [f"Bearer {TOKEN}".encode()]},
            timeout=5,
        )
        assert [i["fields"]["PIN"] for i in (await listing.json())["items"]] == ["7"]
    finally:
        process.terminate()
        process.communicate(timeout=30)
