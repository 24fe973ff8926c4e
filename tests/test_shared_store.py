"""
Layer 2: two pushd nodes on one shared store, in memory.  What one node
learns (an operator's approval, a queued command) reaches a device that
polls the other.  The store is the memory store marked as shared, which is
what a PostgreSQL database is to several nodes.
"""

from __future__ import annotations

from typing import Any, Tuple

from pushd.model import DeviceUpdate
from pushd.storage.memory import MemoryStore
from pushd.testing import TestServer
from tests.test_web_iclock import handshake, make_server, send, settle


class SharedMemoryStore(MemoryStore):
    shared = True


def two_nodes(tmp_path: Any, registration: str = "open") -> Tuple[TestServer, TestServer]:
    store = SharedMemoryStore()
    first = make_server(tmp_path / "a", registration, store=store)
    second = make_server(tmp_path / "b", registration, store=store)
    return first, second


def test_a_command_queued_on_one_node_is_delivered_by_the_other(tmp_path: Any) -> None:
    a, b = two_nodes(tmp_path)
    handshake(a, "N1")
    handshake(b, "N1")
    command = settle(a, a.app.commands.submit("N1", {"kind": "reboot"}))
    reply = send(b, "GET", "/iclock/getrequest?SN=N1")
    assert reply.body == f"C:{command.id}:REBOOT".encode()


def test_an_approval_and_a_block_on_one_node_hold_at_once_on_the_other(tmp_path: Any) -> None:
    a, b = two_nodes(tmp_path, registration="approve")
    assert handshake(b, "N2").status == 401  # pending, and now known to b
    settle(a, a.app.registry.update("N2", DeviceUpdate(state="approved")))
    assert send(b, "GET", "/iclock/getrequest?SN=N2").status == 200
    settle(a, a.app.registry.update("N2", DeviceUpdate(state="blocked")))
    assert send(b, "GET", "/iclock/getrequest?SN=N2").status == 401


def test_a_store_of_its_own_keeps_devices_cached(tmp_path: Any) -> None:
    store = MemoryStore()
    a = make_server(tmp_path, "approve", store=store)
    assert handshake(a, "N3").status == 401
    settle(a, store.update_device("N3", DeviceUpdate(state="approved")))  # behind its back
    a.reactor.advance(3600)
    assert send(a, "GET", "/iclock/getrequest?SN=N3").status == 401
