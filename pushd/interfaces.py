# -*- test-case-name: tests.test_storage_contract -*-
"""
The interfaces of pushd: the single place where they are defined and documented.

Every method that may touch I/O returns a ``Deferred``; implementations that
answer at once (the memory store) still return one (``succeed(...)``), so
callers never branch on the backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Tuple

from zope.interface import Attribute, Interface

if TYPE_CHECKING:  # pragma: no cover
    from twisted.internet.defer import Deferred

    from pushd.model import Command, Device, DeviceUpdate, IngestResult, Page, RecordQuery
    from pushd.protocol.records import CommandReply, FingerTemplate, Record, UserInfo

__all__ = [
    "ICryptoTransport",
    "ICryptoTransportFactory",
    "IEventSink",
    "IEventSinkFactory",
    "IPushdPlugin",
    "IResourcePlugin",
    "IStore",
    "ITableHandlerPlugin",
    "IVerifier",
    "IVerifierPlugin",
    "SinkRejected",
    "Verdict",
]


class IStore(Interface):
    """
    Durable storage of devices and everything they upload.

    Every write is one transaction: when the returned Deferred fires, the data
    is committed; when it fails (with :class:`pushd.errors.StoreError`),
    nothing of that call was stored.  Re-sent data is stored once.
    """

    kind: str = Attribute("The backend name reported by /api/health: 'sqlite', 'memory'...")
    shared: bool = Attribute(
        "Whether other pushd processes may write to the same store at the same time "
        "(then nothing read from it may be cached for long)."
    )

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

    def crypto_state(sn: str) -> Deferred[Optional[bytes]]:
        """:returns: Deferred firing with the device's crypto transport state, or ``None``."""

    def set_crypto_state(sn: str, state: Optional[bytes]) -> Deferred[None]:
        """Keep (or, with ``None``, forget) the device's crypto transport state."""

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

    # -- commands (spec 12, 13) -------------------------------------------

    def add_command(command: Command) -> Deferred[Command]:
        """
        Queue a command (its ``status`` is ``pending``).

        :raises ValueError: the id is already used.
        """

    def get_command(cmd_id: str) -> Deferred[Optional[Command]]:
        """:returns: Deferred firing with the command, or ``None`` if unknown."""

    def claim_commands(
        sn: str,
        now: str,
        budget: int,
        limit: int,
        resend_before: str,
        max_attempts: int,
    ) -> Deferred[list[Command]]:
        """
        Take the commands to deliver to ``sn`` on this poll, oldest first, and
        mark them ``sent`` (``sent = now``, ``attempts`` + 1) in one transaction.

        Candidates are ``pending`` commands and ``sent`` ones whose last
        delivery is older than ``resend_before`` and that were delivered fewer
        than ``max_attempts`` times.  At most ``limit`` commands are taken, and
        no more than fit in ``budget`` bytes of ``C:<id>:<command>`` lines
        joined by LF (UTF-8), except that the first is always taken.

        :returns: Deferred firing with the claimed commands, as updated.
        """

    def complete_command(
        sn: str,
        cmd_id: str,
        status: str,
        return_code: str,
        reply: dict[str, Any],
        when: str,
    ) -> Deferred[Optional[Command]]:
        """
        Record the device's result of a command: ``status`` (``succeeded`` or
        ``failed``), its ``Return`` code, the parsed reply.  A command that is
        already completed is left as it is (a device may send a result twice).

        :returns: Deferred firing with the command, or ``None`` when ``sn``
            has no command with that id (a foreign or unknown reply).
        """

    def expire_commands(
        now: str, sent_before: str, max_attempts: int, created_before: str
    ) -> Deferred[list[Command]]:
        """
        Mark as ``expired`` the ``sent`` commands delivered ``max_attempts``
        times, the last time before ``sent_before``, and the ``pending`` ones
        created before ``created_before``.

        :returns: Deferred firing with the commands expired now.
        """

    # -- server-side users -------------------------------------------------

    def save_user(user: UserInfo, templates: Sequence[Record], when: str) -> Deferred[None]:
        """
        Create or replace a user given by the operator, with the templates
        (finger, face, vein, unified, user photo, comparison photo) given;
        the user's other stored templates are removed.
        """

    def delete_user(pin: str) -> Deferred[bool]:
        """Remove a user, its templates and photos.  :returns: whether it existed."""

    def user_templates(pin: str) -> Deferred[list[Record]]:
        """:returns: every stored template and photo record of the user (all kinds)."""

    def user_devices(pin: str) -> Deferred[list[str]]:
        """:returns: the serial numbers of the devices that sent this user, sorted."""

    # -- events: the outbox (CONTRACT 4) ------------------------------------

    def use_outbox(enabled: bool) -> None:
        """
        Whether writes also record their events (CONTRACT 4) in the outbox,
        in the same transaction.  Off by default (no sink configured: nobody
        would read them); set before :meth:`open`.
        """

    def record_event(sn: str, type: str, data: dict[str, Any], when: str) -> Deferred[str]:
        """
        Record an event that no stored record carries (``device.online``...).

        :returns: Deferred firing with the event's id ("" when the outbox is off).
        """

    def events_after(position: int, limit: int) -> Deferred[list[tuple[int, dict[str, Any]]]]:
        """:returns: Deferred firing with up to ``limit`` ``(position, event)`` pairs, in order."""

    def outbox_size(after: int) -> Deferred[int]:
        """:returns: Deferred firing with how many events follow position ``after``."""

    def sink_position(name: str) -> Deferred[int]:
        """:returns: Deferred firing with the position a sink delivered up to (0 at first)."""

    def set_sink_position(name: str, position: int) -> Deferred[None]:
        """Record that the sink delivered every event up to ``position``."""

    def add_dead_letters(
        sink: str, events: Sequence[dict[str, Any]], reason: str, when: str
    ) -> Deferred[None]:
        """Keep events a sink's receiver refused for good, with the reason."""

    def dead_letters(sink: Optional[str], query: RecordQuery) -> Deferred[Page]:
        """A page of dead letters (``id, sink, event, reason, time``), of one sink or all."""

    def purge_events(before: int) -> Deferred[int]:
        """Drop outbox events at positions up to ``before`` (delivered to every sink)."""

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


# -- crypto transports (spec 6, 7, Appendix 8; docs/crypto.md) ---------------

if TYPE_CHECKING:  # pragma: no cover
    from pushd.crypto import Unwrapped


class ICryptoTransport(Interface):
    """
    How the traffic of one device is protected: ``"plain"`` or ``"zkx1"``,
    chosen per device by name (see :class:`ICryptoTransportFactory`).

    A transport holds no per-device state.  The device's state (pinned
    device key, session keys, sequence numbers, replay cache, failure count,
    last activity) is an opaque, versioned ``bytes`` blob: every method takes
    the stored blob (``None`` or ``b""`` when there is none yet) and returns
    the blob to store in its place, so a restarted server or another node
    continues the session.  The blob holds secret keys: keep it out of logs
    and APIs.  Calls for one device must be serialised (read, call, store).

    Every method is pure and synchronous (no I/O; RSA makes ``exchange``
    take a few milliseconds).  Errors are :class:`pushd.crypto.CryptoError`
    subclasses: send ``err.status`` and ``str(err)`` to the device, log
    ``err.detail``, and store ``err.state`` when it is not ``None`` (a
    failure was counted, or the session dropped or expired).
    """

    name: str = Attribute("The transport's name: 'plain', 'zkx1'...")
    encrypted_tables: frozenset[str] = Attribute(
        "Upper-case cdata table names whose bodies are encrypted (pass them to unwrap)."
    )

    def options() -> Sequence[Tuple[str, str]]:
        """
        :returns: the pairs this transport puts in the ``GET OPTION FROM:``
            block: ``Encrypt=0`` for plain; ``Encrypt=1``,
            ``EncryptFlag=1000000000``, ``EncryptProfile=ZKX1`` for ZKX1.
        """

    def restart(state: Optional[bytes]) -> bytes:
        """
        The device sent ``GET /iclock/cdata?options=all``: discard its session,
        keep its pinned key.

        :returns: the state to store.
        :raises StateError: ``state`` cannot be read.
        """

    def exchange(
        sn: str, kind: str, body: bytes, state: Optional[bytes], now: float
    ) -> Tuple[bytes, bytes]:
        """
        Serve ``POST /iclock/exchange?SN=<sn>&type=<kind>``.

        :param kind: the ``type`` query value, ``publickey`` or ``factors``
            (any case).
        :param body: the raw request body (``PublicKey=...`` or
            ``Factors=...``), never form-decoded.
        :param now: the time in seconds (``IReactorTime.seconds()``).
        :returns: ``(reply body, state)``; send the reply with status 200 and
            ``Content-Type: application/push;charset=UTF-8``.
        :raises ExchangeNotSupported: 404, the transport does not encrypt;
            ``detail`` describes the request (a vendor key blob?) for the
            WARNING and the device alert.
        :raises ExchangeFailed: 400, one generic body for every malformed
            body, unacceptable key (:class:`~pushd.crypto.BadDeviceKey`) or
            failed decryption.
        :raises ExchangeOutOfOrder: 409, ``factors`` before ``publickey``.
        :raises KeyMismatch: 403, the key differs from the one pinned for
            ``sn``; raise an alert.
        :raises StateError: 500, ``state`` cannot be read.
        """

    def unwrap(sn: str, body: bytes, state: Optional[bytes], now: float) -> Unwrapped:
        """
        Open the body of an upload to a table in :attr:`encrypted_tables`.

        :returns: a :class:`pushd.crypto.Unwrapped`: either ``plaintext`` to
            process, then call :meth:`remember` with its ``seq``, ``tag`` and
            the reply; or ``cached_reply`` (an exact replay) to send again
            without processing anything.  Store its ``state`` (plain: the
            body itself, unchanged state).
        :raises BadEnvelope: 400, not an envelope.
        :raises NoSession: 401, no live session; the client redoes the handshake.
        :raises Replay: 409, an old sequence number that is not an exact replay.
        :raises BadTag: 400, the authentication tag does not verify.
        :raises BadCrc: 400, wrong plaintext length or CRC32.
        :raises StateError: 500, ``state`` cannot be read.
        """

    def remember(state: Optional[bytes], seq: int, tag: bytes, reply: bytes) -> bytes:
        """
        Message ``(seq, tag)`` from :meth:`unwrap` was processed and answered
        with ``reply`` (the exact body sent).  Call it once the reply is
        final, not after a transient failure (a 503 lets the device send the
        same message again).  The message is then never processed again and
        its exact replay gets ``reply``.

        :returns: the state to store.
        :raises NoSession: 401, the session is gone meanwhile (send the reply anyway).
        :raises StateError: 500, ``state`` cannot be read.
        """

    def wrap(sn: str, plaintext: bytes, state: Optional[bytes], now: float) -> Tuple[bytes, bytes]:
        """
        Protect a reply body for the device (reserved: replies stay
        plaintext in ZKX1 v1; plain returns ``plaintext`` itself).

        :returns: ``(body, state)``.
        :raises NoSession: 401, no live session.
        :raises StateError: 500, ``state`` cannot be read.
        """

    def describe(state: Optional[bytes]) -> dict[str, Any]:
        """
        :returns: JSON-ready facts for operators (profile, phase, pinned key
            fingerprint, sequence numbers, failures); never a secret.
        :raises StateError: ``state`` cannot be read.
        """


class ICryptoTransportFactory(Interface):
    """
    A crypto transport plugin, found with ``twisted.plugin.getPlugins`` in
    the ``pushd.plugins`` namespace package (see :mod:`pushd.crypto.registry`).
    A third party adds one by shipping ``pushd/plugins/<name>.py`` (no
    ``__init__.py``) with a module-level object that provides
    ``twisted.plugin.IPlugin`` and this interface.
    """

    name: str = Attribute("The name devices are configured with: 'plain', 'zkx1'...")
    description: str = Attribute("One line for operators.")

    def build(data_dir: str) -> ICryptoTransport:
        """
        Make the transport; keys it needs live in ``data_dir``.  May block
        (key generation): call it at start-up.

        :raises KeyStoreError: its keys cannot be created or read.
        """


class IPushdPlugin(Interface):
    """
    A plugin an operator enables by name (``--plugin NAME``), found with
    ``twisted.plugin.getPlugins`` in the ``pushd.plugins`` namespace package.

    A plugin object provides ``twisted.plugin.IPlugin``, this interface, and
    one or more of :class:`IResourcePlugin`, :class:`ITableHandlerPlugin` and
    :class:`IVerifierPlugin`.  Everything it needs comes through the
    :class:`pushd.plugin_api.PluginFacade` handed to it, never pushd's
    internals.  A plugin that raises is contained: logged, and answered
    503 for that request; the server goes on.

    Example (``pushd/plugins/acme.py`` in the plugin's package, with no
    ``__init__.py`` beside it)::

        @implementer(IPlugin, IPushdPlugin, ITableHandlerPlugin)
        class Acme:
            name = "acme"
            description = "Stores ACME temperature readings"
            tables = ("ACMETEMP",)

            def handle(self, facade, sn, table, params, body):
                ...

        acme = Acme()
    """

    name: str = Attribute("The name operators enable it by: letters, digits, '-' and '_'.")
    description: str = Attribute("One line for ``twistd pushd --help-plugins``.")


class IResourcePlugin(Interface):
    """
    A plugin that serves HTTP: children of the device tree under ``/iclock/``
    (only for paths pushd does not serve itself) and of the REST API under
    ``/api/ext/<name>/`` (behind the API token).

    Example: ``api_children`` returning ``{b"readings": Readings(facade)}``
    serves ``GET /api/ext/acme/readings``.
    """

    def device_children(facade: Any) -> Mapping[bytes, Any]:
        """:returns: path segment -> ``IResource`` to add under ``/iclock/``."""

    def api_children(facade: Any) -> Mapping[bytes, Any]:
        """:returns: path segment -> ``IResource`` to add under ``/api/ext/<name>/``."""


class ITableHandlerPlugin(Interface):
    """
    A plugin that handles ``POST /iclock/cdata?table=<T>`` for tables pushd
    does not know, or in place of pushd's own handling of one it does.

    The acknowledgement rule holds: pushd answers ``OK: <n>`` only after the
    Deferred of :meth:`handle` fired with ``n``, which the plugin makes fire
    only once its data is stored (``facade.store_records``).  The body has
    passed the same size limits as any upload.
    """

    tables: Sequence[str] = Attribute("Table names handled, compared case-insensitively.")

    def handle(
        facade: Any, sn: str, table: str, params: Mapping[str, str], body: bytes
    ) -> Deferred[int]:
        """
        Parse and store one upload of an approved device.

        :returns: Deferred firing with the number of records handled.
        :raises pushd.errors.ProtocolError: the body is malformed (HTTP 400).
        """


class IVerifierPlugin(Interface):
    """A plugin that decides PostVerifyData and 3.x remote verification (one may be enabled)."""

    def verifier(facade: Any) -> IVerifier:
        """:returns: the :class:`IVerifier` to use."""


class SinkRejected(Exception):
    """
    A sink's receiver refused a batch for good (a webhook's 4xx): retrying
    would not help, so the batch goes to the dead letters.
    """


class IEventSink(Interface):
    """
    Where events go (CONTRACT 4): a webhook, an MQTT broker, a JSON-lines file.

    pushd's dispatcher reads events from the durable outbox in order,
    batches them and calls :meth:`deliver`; it retries with backoff on any
    failure but :class:`SinkRejected`, and moves on only after a batch was
    delivered, so delivery is at least once and each device's events keep
    their order.  Events carry a stable ``id``: receivers deduplicate with it.
    """

    name: str = Attribute("A stable name for this configured sink (its URL without secrets).")

    def deliver(events: Sequence[Mapping[str, Any]]) -> Deferred[None]:
        """
        Deliver one batch of event objects, oldest first.

        :returns: Deferred firing when the receiver acknowledged the batch.
        :raises SinkRejected: the receiver refused it for good (dead letters).
        """

    def close() -> Deferred[None]:
        """Release connections; no call follows."""


class IEventSinkFactory(Interface):
    """An event sink plugin, found in ``pushd.plugins``; chosen by the URL scheme of ``--sink``."""

    name: str = Attribute("The plugin name.")
    schemes: Sequence[str] = Attribute(
        "URL schemes it serves: 'http', 'https', 'mqtt', 'file', '-'."
    )

    def build(url: str, secret: str, reactor: Any) -> IEventSink:
        """
        :param url: the ``--sink`` value.
        :param secret: ``--sink-secret`` (webhook signatures); may be empty.
        :raises ValueError: an unusable URL.
        """
