# -*- test-case-name: tests.test_storage_contract -*-
"""
Values the store hands back: devices, pages of stored records, ingest results.

Pure: no Twisted imports.  Times are ISO 8601 strings; server times are UTC with
a ``Z`` suffix, device times are the device-local ``YYYY-MM-DDTHH:MM:SS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

__all__ = [
    "COMMAND_STATES",
    "DEVICE_STATES",
    "RECORD_KINDS",
    "STAMP_TABLES",
    "Command",
    "Device",
    "DeviceUpdate",
    "IngestResult",
    "Page",
    "RecordQuery",
]

DEVICE_STATES = ("pending", "approved", "blocked")

#: The life of a queued command: ``pending`` -> ``sent`` -> ``succeeded`` /
#: ``failed`` (by the device's ``Return`` code) or ``expired`` (no reply).
COMMAND_STATES = ("pending", "sent", "succeeded", "failed", "expired")

#: The tables whose upload stamps the options reply carries (spec 5).
STAMP_TABLES = ("ATTLOG", "OPERLOG", "ATTPHOTO", "BIODATA", "IDCARD", "ERRORLOG")

#: What :meth:`pushd.interfaces.IStore.query` can list.
RECORD_KINDS = (
    "attendance",
    "operations",
    "users",
    "fingerprints",
    "faces",
    "veins",
    "biodata",
    "userphotos",
    "biophotos",
    "attphotos",
    "idcards",
    "errors",
    "workcodes",
    "other",
    "rejected",
    "replies",
    "verifications",
    "events",
    "doorstates",
    "commands",
)


@dataclass(frozen=True)
class Device:
    """A terminal the server has heard from."""

    sn: str
    state: str
    first_seen: str
    last_seen: str = ""
    ip: str = ""
    alias: str = ""
    group: str = ""
    push_version: str = ""
    language: str = ""
    device_type: str = ""
    pushcommkey: str = ""
    firmware: str = ""
    info: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)
    stamps: Mapping[str, str] = field(default_factory=dict)
    hybrid: Mapping[str, str] = field(default_factory=dict)
    crypto: str = "plain"


@dataclass(frozen=True)
class DeviceUpdate:
    """A partial update of a device; ``None`` means "leave as it is".

    ``info``, ``options``, ``settings`` and ``hybrid`` are merged key by key
    into what is stored; the other fields replace.
    """

    last_seen: Optional[str] = None
    ip: Optional[str] = None
    alias: Optional[str] = None
    group: Optional[str] = None
    state: Optional[str] = None
    push_version: Optional[str] = None
    language: Optional[str] = None
    device_type: Optional[str] = None
    pushcommkey: Optional[str] = None
    firmware: Optional[str] = None
    info: Optional[Mapping[str, str]] = None
    options: Optional[Mapping[str, str]] = None
    settings: Optional[Mapping[str, str]] = None
    hybrid: Optional[Mapping[str, str]] = None
    crypto: Optional[str] = None


@dataclass(frozen=True)
class Command:
    """
    A command queued for one device (spec 12).

    ``command`` is the text sent after ``C:<id>:``; ``kind`` the typed builder
    that made it (``"raw"`` for text given as is); ``family`` what
    ``--allow-commands`` calls it (``standard``, ``shell``, ``files``,
    ``upgrade``).  ``sent`` is the time of the latest delivery, ``attempts``
    how many deliveries there were.  ``reply`` is the parsed result
    (JSON-ready), ``return_code`` the device's ``Return`` value.
    """

    id: str
    sn: str
    command: str
    kind: str = "raw"
    family: str = "standard"
    status: str = "pending"
    created: str = ""
    sent: str = ""
    completed: str = ""
    attempts: int = 0
    return_code: Optional[str] = None
    reply: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestResult:
    """What one :meth:`~pushd.interfaces.IStore.ingest` call committed.

    ``stored`` counts records that were new, ``duplicates`` those already
    stored (re-sent data), ``rejected`` the quarantined lines; ``updated``
    counts records that replaced an older version (users, templates).
    """

    stored: int = 0
    duplicates: int = 0
    updated: int = 0
    rejected: int = 0

    @property
    def total(self) -> int:
        return self.stored + self.duplicates + self.updated + self.rejected


@dataclass(frozen=True)
class RecordQuery:
    """Filters for :meth:`~pushd.interfaces.IStore.query`; all optional.

    ``since``/``until`` bound the record's own time (device time for punches,
    reception time for the rest), inclusive.  ``cursor`` is the opaque
    ``next`` of the previous page.
    """

    sn: Optional[str] = None
    pin: Optional[str] = None
    since: Optional[str] = None
    until: Optional[str] = None
    cmd_id: Optional[str] = None
    status: Optional[str] = None
    cursor: Optional[str] = None
    limit: int = 100


@dataclass(frozen=True)
class Page:
    """One page of a listing: JSON-ready dicts, oldest first, and the next cursor."""

    items: List[Dict[str, Any]]
    next: Optional[str] = None


Stamp = Tuple[str, str]
