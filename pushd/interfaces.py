# -*- test-case-name: tests.test_storage_contract -*-
"""
The interfaces of pushd: the single place where they are defined and documented.

Every method that may touch I/O returns a ``Deferred``; implementations that
answer at once (the memory store) still return one (``succeed(...)``), so
callers never branch on the backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence, Tuple

from zope.interface import Attribute, Interface

if TYPE_CHECKING:  # pragma: no cover
    from twisted.internet.defer import Deferred

    from pushd.model import Device, DeviceUpdate, IngestResult, Page, RecordQuery
    from pushd.protocol.records import CommandReply, FingerTemplate, Record, UserInfo

__all__ = ["IStore", "IVerifier", "Verdict"]


class IStore(Interface):
    """
    Durable storage of devices and everything they upload.

    Every write is one transaction: when the returned Deferred fires, the data
    is committed; when it fails (with :class:`pushd.errors.StoreError`),
    nothing of that call was stored.  Re-sent data is stored once.
    """

    kind: str = Attribute("The backend name reported by /api/health: 'sqlite', 'memory'...")

    def open() -> Deferred[None]:
        """Connect and create or upgrade the schema.  Called once before any other method."""

    def close() -> Deferred[None]:
        """Release connections and threads.  No other method is called afterwards."""

    # -- devices ---------------------------------------------------------

    def get_device(sn: str) -> Deferred[Optional[Device]]:
        """:returns: Deferred firing with the device, or ``None`` if unknown."""

    def list_devices() -> Deferred[list[Device]]:
        """:returns: Deferred firing with every known device, ordered by serial number."""

    def add_device(sn: str, state: str, when: str) -> Deferred[Device]:
        """
        Record a device if it is unknown (``first_seen = last_seen = when``).

        :returns: Deferred firing with the stored device: the new one, or the
            existing one unchanged if the serial number was already known.
        """

    def update_device(sn: str, update: DeviceUpdate) -> Deferred[Optional[Device]]:
        """
        Apply a partial update (see :class:`pushd.model.DeviceUpdate`).

        :returns: Deferred firing with the updated device, or ``None`` if unknown.
        """

    def record_seen(seen: Sequence[Tuple[str, str, str]]) -> Deferred[None]:
        """Set ``last_seen`` and ``ip`` of many devices at once: ``(sn, ip, when)`` triples."""

    def reset_stamps(sn: str) -> Deferred[None]:
        """Set every upload stamp of the device to ``0`` (spec 12.3.1, CHECK)."""

    # -- uploads ---------------------------------------------------------

    def ingest(
        sn: str,
        records: Sequence[Record],
        stamp: Optional[Tuple[str, str]],
        received: str,
        cmd_id: Optional[str],
    ) -> Deferred[IngestResult]:
        """
        Store the records of one upload in one transaction.

        Punches are deduplicated on (sn, pin, time, status, verify, workcode),
        operation logs on all their fields, photos on (sn, name); users and
        templates are replaced by newer versions (users by pin, templates by
        their key: fingerprint (pin, fid), face (pin, fid), vein
        (pin, fid, index), unified (pin, type, no, index)).  ``Rejected``
        records go to quarantine.  ``stamp`` is ``(table, value)`` and moves the
        device's stamp for that table forward in the same transaction.
        ``cmd_id`` links query replies (``CmdId=``) to their command.

        :returns: Deferred firing with :class:`pushd.model.IngestResult`.
        :raises StoreError: nothing was stored.
        """

    def record_replies(sn: str, replies: Sequence[CommandReply], received: str) -> Deferred[int]:
        """Store command results (spec 13).  :returns: Deferred firing with how many were stored."""

    def record_verification(sn: str, data: bytes, verdict: str, received: str) -> Deferred[None]:
        """Store one PostVerifyData request (spec 12.8.3) and the answer given."""

    # -- reads -----------------------------------------------------------

    def get_user(pin: str) -> Deferred[Optional[UserInfo]]:
        """:returns: Deferred firing with the newest stored version of the user, or ``None``."""

    def fingerprints(pin: str) -> Deferred[list[FingerTemplate]]:
        """:returns: Deferred firing with the user's fingerprint templates, ordered by finger."""

    def query(kind: str, query: RecordQuery) -> Deferred[Page]:
        """
        List stored records of one kind (see :data:`pushd.model.RECORD_KINDS`),
        oldest first, as JSON-ready dicts.

        :raises ValueError: for an unknown kind.
        """

    def count(kind: str, sn: Optional[str]) -> Deferred[int]:
        """:returns: Deferred firing with how many records of ``kind`` are stored (for ``sn``)."""


class Verdict:
    """The answer of an :class:`IVerifier`: whether to allow, and the body to send."""

    def __init__(self, allow: bool, reply: str = "OK") -> None:
        self.allow = allow
        self.reply = reply

    def __repr__(self) -> str:
        return f"Verdict(allow={self.allow!r}, reply={self.reply!r})"


class IVerifier(Interface):
    """
    Decides background verification requests (spec 12.8.3, ``type=PostVerifyData``).

    Example: allow only PINs listed by a payroll system::

        @implementer(IVerifier)
        class PayrollVerifier:
            def verify(self, sn, data):
                return succeed(Verdict(b"PIN=42" in data))
    """

    def verify(sn: str, data: bytes) -> Deferred[Verdict]:
        """:returns: Deferred firing with the :class:`Verdict` for this request."""
