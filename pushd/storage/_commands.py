# -*- test-case-name: tests.test_storage_contract -*-
"""
The command queue's rules, shared by every store so they behave alike:
which commands a poll may claim, how many fit in a reply, which expire, and
the JSON form of a command.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from pushd.model import Command, RecordQuery

__all__ = [
    "TEMPLATE_KINDS",
    "claimable",
    "command_item",
    "expires",
    "fit_budget",
    "matches",
]

#: The kinds that hold a user's templates and photos.
TEMPLATE_KINDS = ("fingerprints", "faces", "veins", "biodata", "userphotos", "biophotos")


def claimable(command: Command, resend_before: str, max_attempts: int) -> bool:
    """Whether a poll may deliver ``command``: never sent, or sent long ago and not too often."""
    if command.status == "pending":
        return True
    return (
        command.status == "sent"
        and command.sent < resend_before
        and command.attempts < max_attempts
    )


def line_size(command: Command) -> int:
    """The bytes of ``C:<id>:<command>`` plus the LF that joins it to the next."""
    return len(f"C:{command.id}:{command.command}".encode()) + 1


def fit_budget(candidates: Iterable[Command], budget: int, limit: int) -> list[Command]:
    """The leading candidates that fit in ``budget`` bytes and ``limit`` commands (at least one)."""
    taken: list[Command] = []
    used = 0
    for command in candidates:
        size = line_size(command)
        if taken and (len(taken) >= limit or used + size > budget + 1):
            break
        taken.append(command)
        used += size
    return taken


def expires(command: Command, sent_before: str, max_attempts: int, created_before: str) -> bool:
    """Whether ``command`` is past hope: delivered the last time unanswered, or never delivered."""
    if command.status == "sent":
        return command.attempts >= max_attempts and command.sent < sent_before
    return command.status == "pending" and command.created < created_before


def matches(command: Command, query: RecordQuery) -> bool:
    """Whether ``command`` passes the filters of ``query`` (sn, status, since/until on created)."""
    if query.pin is not None or query.cmd_id is not None:
        raise ValueError("commands cannot be filtered by pin or cmd_id")
    return (
        (query.sn is None or command.sn == query.sn)
        and (query.status is None or command.status == query.status)
        and (query.since is None or command.created >= query.since)
        and (query.until is None or command.created <= query.until)
    )


def command_item(command: Command) -> dict[str, Any]:
    """The JSON-ready dict of a command."""
    item = asdict(command)
    item["reply"] = dict(command.reply)
    return item
