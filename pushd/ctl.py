# -*- test-case-name: tests.test_ctl -*-
"""
``pushctl``: the command-line client of the pushd REST API.

::

    pushctl [--url URL] [--token TOKEN] [--json] COMMAND ...

``--url`` defaults to ``$PUSHD_URL`` (else ``http://127.0.0.1:8081``) and
``--token`` to ``$PUSHD_API_TOKEN``.  Output is an aligned table or a list
of ``key  value`` lines; ``--json`` prints the API's JSON instead.  Listings
follow the ``next`` cursors to the end (or ``--limit`` rows).

Exit status: 0 success, 1 the server refused (the reason is printed), 2 bad
usage, 3 the server could not be reached.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import sys
from typing import IO, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote, urlsplit

import treq
from twisted.internet.defer import CancelledError
from twisted.internet.error import (
    ConnectError,
    ConnectionRefusedError,
    DNSLookupError,
    TimeoutError,
)
from twisted.web.client import ResponseFailed, ResponseNeverReceived

__all__ = ["DEFAULT_URL", "CtlError", "main", "run"]

DEFAULT_URL = "http://127.0.0.1:8081"

#: Seconds to wait for the server's reply headers.
TIMEOUT = 30

#: Rows asked for per request when following cursors.
PAGE_SIZE = 1000

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

_UNREACHABLE = (
    ConnectError,
    DNSLookupError,
    TimeoutError,
    ResponseNeverReceived,
    ResponseFailed,
    CancelledError,
)


class CtlError(Exception):
    """A failure to report in one line, with the exit status to use."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


# -- talking to the API ------------------------------------------------------------


class Client:
    """The REST API over ``treq`` (or a :class:`treq.client.HTTPClient`)."""

    def __init__(self, http: Any, url: str, token: str) -> None:
        self._http = http
        self._url = url.rstrip("/")
        self._token = token

    def _headers(self) -> Dict[bytes, List[bytes]]:
        headers = {b"Accept": [b"application/json"]}
        if self._token:
            headers[b"Authorization"] = [b"Bearer " + self._token.encode("utf-8")]
        return headers

    async def _send(
        self,
        method: str,
        path: str,
        params: Optional[Mapping[str, Any]] = None,
        body: Optional[Mapping[str, Any]] = None,
    ) -> Any:
        query = [(k, str(v)) for k, v in (params or {}).items() if v is not None]
        kwargs: Dict[str, Any] = {"headers": self._headers(), "timeout": TIMEOUT}
        if query:
            kwargs["params"] = query
        if body is not None:
            kwargs["json"] = dict(body)
        try:
            return await self._http.request(method, self._url + path, **kwargs)
        except _UNREACHABLE as e:
            raise CtlError(f"cannot reach {self._url}: {_reason(e)}", EXIT_UNREACHABLE) from None

    async def _failure(self, response: Any) -> CtlError:
        try:
            text = (await treq.content(response)).decode("utf-8", "replace")
        except _UNREACHABLE:
            text = ""
        try:
            reason = str(json.loads(text)["error"])
        except (ValueError, KeyError, TypeError):
            reason = ""
        code = response.code
        if code == 401:
            return CtlError("wrong or missing token (give --token or set PUSHD_API_TOKEN)")
        if code == 404:
            return CtlError(
                f"not found: {reason}"
                if reason and reason != "not found"
                else "not found (is this a pushd API URL?)"
            )
        return CtlError(f"HTTP {code}: {reason or text.strip()[:200] or 'no reason given'}")

    async def call(
        self,
        method: str,
        path: str,
        params: Optional[Mapping[str, Any]] = None,
        body: Optional[Mapping[str, Any]] = None,
    ) -> Any:
        """The JSON reply of one request; :raises CtlError: on any refusal."""
        response = await self._send(method, path, params, body)
        if response.code >= 400:
            raise await self._failure(response)
        try:
            data = await treq.content(response)
            return json.loads(data.decode("utf-8"))
        except _UNREACHABLE as e:
            raise CtlError(f"lost {self._url}: {_reason(e)}", EXIT_UNREACHABLE) from None
        except ValueError:
            raise CtlError(f"unexpected reply from {self._url}: not JSON") from None

    async def items(
        self, path: str, params: Mapping[str, Any], limit: Optional[int]
    ) -> List[Dict[str, Any]]:
        """Every item of a listing, following ``next`` cursors (up to ``limit``)."""
        found: List[Dict[str, Any]] = []
        cursor = None
        while True:
            size = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(found))
            page = await self.call("GET", path, {**params, "limit": size, "cursor": cursor})
            found.extend(page["items"])
            cursor = page.get("next")
            if cursor is None or (limit is not None and len(found) >= limit):
                return found

    async def stream(
        self, path: str, params: Mapping[str, Any], write: Callable[[bytes], None]
    ) -> None:
        """Copy a (CSV) body to ``write`` as it arrives."""
        response = await self._send("GET", path, params)
        if response.code >= 400:
            raise await self._failure(response)
        try:
            await treq.collect(response, write)
        except _UNREACHABLE as e:
            raise CtlError(f"the export was cut short: {_reason(e)}", EXIT_UNREACHABLE) from None


def _reason(error: BaseException) -> str:
    if isinstance(error, ResponseFailed):
        reasons = [f.getErrorMessage() for f in error.reasons]
        return "; ".join(reasons) or "the connection failed"
    if isinstance(error, ResponseNeverReceived):
        return "the connection closed without a reply"
    if isinstance(error, CancelledError):
        return f"no reply within {TIMEOUT} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return str(error).rstrip(".") or type(error).__name__


# -- output --------------------------------------------------------------------------


class Output:
    """Text and bytes to one stream; bytes go to its binary buffer when it has one."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def line(self, text: str = "") -> None:
        self._stream.write(text + "\n")

    def json(self, value: Any) -> None:
        self.line(json.dumps(value, indent=2, ensure_ascii=False))

    def bytes(self, data: bytes) -> None:
        buffer = getattr(self._stream, "buffer", None)
        if buffer is not None:
            self._stream.flush()
            buffer.write(data)
        else:
            self._stream.write(self._decoder.decode(data))

    def flush(self) -> None:
        self._stream.flush()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(v) for v in value) or "-"
    return " ".join(str(value).split()) if str(value) != "" else "-"


def table(
    out: Output, items: Sequence[Mapping[str, Any]], columns: Sequence[Tuple[str, Any]]
) -> None:
    """Aligned columns: ``(heading, key or function of the item)``."""
    if not items:
        out.line("(none)")
        return
    rows = [[heading for heading, _ in columns]]
    for item in items:
        rows.append([_cell(get(item) if callable(get) else item.get(get)) for _, get in columns])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    for row in rows:
        out.line("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def details(out: Output, value: Mapping[str, Any], indent: str = "") -> None:
    """``key  value`` lines; nested objects indented under their key."""
    width = max((len(str(k)) for k in value), default=0)
    for key, item in value.items():
        if isinstance(item, Mapping):
            out.line(f"{indent}{key}:" + ("" if item else " -"))
            details(out, item, indent + "  ")
        else:
            out.line(f"{indent}{str(key).ljust(width)}  {_cell(item)}")


# -- the commands ---------------------------------------------------------------------

_DEVICE_COLUMNS = (
    ("SN", "sn"),
    ("STATE", "state"),
    ("ONLINE", "online"),
    ("LAST SEEN", "last_seen"),
    ("IP", "ip"),
    ("FIRMWARE", "firmware"),
    ("USERS", lambda d: d.get("counts", {}).get("users")),
    ("ATTLOGS", lambda d: d.get("counts", {}).get("attlogs")),
    ("ALIAS", "alias"),
)
_COMMAND_COLUMNS = (
    ("ID", "id"),
    ("SN", "sn"),
    ("STATUS", "status"),
    ("CREATED", "created"),
    ("RETURN", "return_code"),
    ("COMMAND", lambda c: _short(c.get("command"))),
)
_ATTENDANCE_COLUMNS = (
    ("ID", "id"),
    ("SN", "sn"),
    ("PIN", "pin"),
    ("TIME", "time"),
    ("UTC", "utc"),
    ("STATUS", "status"),
    ("VERIFY", "verify"),
    ("WORKCODE", "workcode"),
)
_USER_COLUMNS = (
    ("PIN", "pin"),
    ("NAME", "name"),
    ("PRIVILEGE", "privilege"),
    ("CARD", "card"),
    ("FINGERPRINTS", lambda u: len(u.get("fingerprints") or ())),
    ("FACES", lambda u: len(u.get("faces") or ())),
    ("DEVICES", "devices"),
)
_ERROR_COLUMNS = (
    ("ID", "id"),
    ("SN", "sn"),
    ("RECEIVED", "received"),
    ("CODE", "err_code"),
    ("MESSAGE", "err_msg"),
    ("ORIGIN", "data_origin"),
    ("CMD", "cmd_id"),
)


def _show(out: Output, as_json: bool, value: Any, human: Callable[[], None]) -> None:
    if as_json:
        out.json(value)
    else:
        human()


def _short(text: Any, width: int = 60) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _path(*segments: str) -> str:
    return "/api/" + "/".join(quote(s, safe="") for s in segments)


def _summary(user: Mapping[str, Any]) -> Dict[str, Any]:
    shown = dict(user)
    for name in ("fingerprints", "faces", "biodata"):
        if isinstance(shown.get(name), list):
            shown[name] = len(shown[name])
    if shown.get("photo"):
        shown["photo"] = "yes"
    return shown


def _params(pairs: Sequence[str]) -> Dict[str, str]:
    params: Dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise CtlError(f"--param takes NAME=VALUE, not {pair!r}", EXIT_USAGE)
        params[name] = value
    return params


async def _execute(
    args: argparse.Namespace, client: Client, out: Output, err: IO[str] = sys.stderr
) -> None:
    command = args.command
    as_json = args.json
    if command in ("migrate", "migrate-store"):
        await _migrate(args, out, err)
    elif command == "health":
        health = await client.call("GET", "/api/health")
        if as_json:
            out.json(health)
        else:
            out.line(f"{health['status']} (store {health['store']}, pushd {health['version']})")
    elif command == "crypto":
        crypto = await client.call("GET", "/api/crypto")
        if as_json:
            out.json(crypto)
        else:
            out.line(f"server key fingerprint (SHA-256): {crypto['server_key_fingerprint']}")
            out.line(f"transports: {', '.join(crypto['transports'])}")
    elif command == "set-crypto":
        change = {"crypto": args.transport}
        device = await client.call("PATCH", _path("devices", args.sn), body=change)
        _show(out, as_json, device, lambda: out.line(f"{device['sn']} uses {device['crypto']}"))
    elif command == "devices":
        devices = await client.items("/api/devices", {"state": args.state}, args.limit)
        _show(out, as_json, devices, lambda: table(out, devices, _DEVICE_COLUMNS))
    elif command == "device":
        device = await client.call("GET", _path("devices", args.sn))
        _show(out, as_json, device, lambda: details(out, device))
    elif command == "approve":
        device = await client.call("POST", _path("devices", args.sn, "approve"))
        _show(out, as_json, device, lambda: out.line(f"{device['sn']} approved"))
    elif command == "send":
        if (args.text is None) == (args.kind is None):
            raise CtlError("send takes either the command text or --kind", EXIT_USAGE)
        if args.text is not None:
            if args.param:
                raise CtlError("--param goes with --kind, not with command text", EXIT_USAGE)
            body: Dict[str, Any] = {"command": args.text}
        else:
            body = {"kind": args.kind, **_params(args.param)}
        sent = await client.call("POST", _path("devices", args.sn, "commands"), body=body)
        if as_json:
            out.json(sent)
        else:
            out.line(f"command {sent['id']} queued for {sent['sn']}: {_short(sent['command'])}")
    elif command == "command":
        found = await client.call("GET", _path("commands", args.id))
        _show(out, as_json, found, lambda: details(out, found))
    elif command == "commands":
        params = {"sn": args.sn, "status": args.status}
        commands = await client.items("/api/commands", params, args.limit)
        _show(out, as_json, commands, lambda: table(out, commands, _COMMAND_COLUMNS))
    elif command == "attendance":
        params = {"sn": args.sn, "pin": args.pin, "since": args.since, "until": args.until}
        if args.csv:
            if args.limit is not None:
                params["limit"] = args.limit
            await client.stream("/api/attendance.csv", params, out.bytes)
            return
        punches = await client.items("/api/attendance", params, args.limit)
        _show(out, as_json, punches, lambda: table(out, punches, _ATTENDANCE_COLUMNS))
    elif command == "users":
        users = await client.items("/api/users", {"sn": args.sn}, args.limit)
        _show(out, as_json, users, lambda: table(out, users, _USER_COLUMNS))
    elif command == "user":
        user = await client.call("GET", _path("users", args.pin))
        _show(out, as_json, user, lambda: details(out, _summary(user)))
    elif command == "errors":
        params = {"sn": args.sn, "since": args.since}
        errors = await client.items("/api/errors", params, args.limit)
        _show(out, as_json, errors, lambda: table(out, errors, _ERROR_COLUMNS))
    else:  # pragma: no cover - argparse allows only the commands above
        raise CtlError(f"unknown command {command}", EXIT_USAGE)


async def _migrate(args: argparse.Namespace, out: Output, err: IO[str]) -> None:
    """The two commands that work on stores directly, not through the API."""
    from twisted.internet import reactor

    from pushd.storage.transfer import TransferError, migrate_schema, migrate_store

    try:
        if args.command == "migrate":
            version = await migrate_schema(args.store, reactor)
            out.line(f"schema version {version}")
            return

        def progress(table: str, done: int, total: int) -> None:
            err.write(f"{table}: {done:,} of {total:,} rows\n")

        copied = await migrate_store(args.source, args.target, reactor, progress)
    except TransferError as e:
        raise CtlError(str(e), EXIT_REFUSED) from e
    except Exception as e:  # a store that cannot be opened (StoreError) and the like
        raise CtlError(f"{e}", EXIT_REFUSED) from e
    if args.json:
        out.json(copied)
    else:
        for table, n in copied.items():
            out.line(f"{table:<14} {n:>12,}")
        out.line(f"copied {sum(copied.values()):,} rows; every table's count checked")


# -- the command line ---------------------------------------------------------------


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The ``pushctl`` argument parser; global options may come before or after the command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the API's base URL (PUSHD_URL, default {DEFAULT_URL})")
    common.add_argument("--token", help="the API token (PUSHD_API_TOKEN)")
    common.add_argument("--json", action="store_true", help="print JSON")
    parser = argparse.ArgumentParser(
        prog="pushctl",
        description="Command-line client of the pushd REST API.",
        parents=[common],
        epilog="Exit status: 0 done, 1 refused by the server, 2 bad usage, 3 server unreachable.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # the subcommands accept the global options too, without overriding them
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    shared.add_argument("--token", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    shared.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[shared])

    def limit(p: argparse.ArgumentParser) -> None:
        p.add_argument("--limit", type=_positive, help="at most this many rows (default: all)")

    command("health", "is the server up?")
    command("crypto", "the ZKX1 server key fingerprint (for clients to pin) and the transports")
    p = command("set-crypto", "choose a device's crypto transport (plain, zkx1...)")
    p.add_argument("sn")
    p.add_argument("transport")
    p = command("devices", "list devices")
    p.add_argument("--state", choices=("pending", "approved", "blocked"))
    limit(p)
    command("device", "one device in detail").add_argument("sn")
    command("approve", "approve a pending device").add_argument("sn")
    p = command("send", "queue a command for a device")
    p.add_argument("sn")
    p.add_argument("text", nargs="?", help="raw command text, e.g. 'REBOOT'")
    p.add_argument("--kind", help="a typed command, e.g. query_attlog")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="for --kind")
    command("command", "one command and its result").add_argument("id")
    p = command("commands", "list commands")
    p.add_argument("--sn")
    p.add_argument("--status", choices=("pending", "sent", "succeeded", "failed", "expired"))
    limit(p)
    p = command("attendance", "list attendance records")
    p.add_argument("--sn")
    p.add_argument("--pin")
    p.add_argument("--since", help="YYYY-MM-DD[THH:MM:SS], device-local time")
    p.add_argument("--until", help="YYYY-MM-DD[THH:MM:SS], inclusive")
    p.add_argument("--csv", action="store_true", help="stream CSV to standard output")
    limit(p)
    p = command("users", "list users")
    p.add_argument("--sn", help="only users this device sent")
    limit(p)
    command("user", "one user with templates").add_argument("pin")
    p = command("migrate", "create or upgrade a store's schema (pushd does it on start too)")
    p.add_argument("store", help="a store URL: sqlite:PATH or postgresql://...")
    p = command(
        "migrate-store",
        "copy everything from one store into an empty one (stop pushd first), counts checked",
    )
    p.add_argument("source", help="the store URL to copy from, e.g. sqlite:/var/lib/pushd/pushd.db")
    p.add_argument("target", help="the empty store URL to copy into, e.g. postgresql://...")
    p = command("errors", "list device error logs")
    p.add_argument("--sn")
    p.add_argument("--since")
    limit(p)
    return parser


def _base_url(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    url = args.url or env.get("PUSHD_URL") or DEFAULT_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CtlError(f"--url must be an http:// or https:// URL, not {url!r}", EXIT_USAGE)
    return url


async def run(
    argv: Sequence[str],
    http: Any = None,
    stdout: Optional[IO[str]] = None,
    stderr: Optional[IO[str]] = None,
    env: Optional[Mapping[str, str]] = None,
) -> int:
    """
    Run one ``pushctl`` command on a running reactor.

    :param http: what sends requests: ``treq`` itself (the default) or a
        :class:`treq.client.HTTPClient`.
    :returns: the exit status.
    """
    out = Output(stdout or sys.stdout)
    err = stderr or sys.stderr
    environ = os.environ if env is None else env
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as e:
        return int(e.code or 0)
    if http is None:
        http = treq
    try:
        url = _base_url(args, environ)
        token = args.token or environ.get("PUSHD_API_TOKEN", "")
        await _execute(args, Client(http, url, token), out, err)
        out.flush()
    except CtlError as e:
        err.write(f"pushctl: {e}\n")
        return e.code
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The ``pushctl`` console script."""
    from twisted.internet.task import react

    arguments = list(sys.argv[1:] if argv is None else argv)
    # parse before the reactor starts, so --help and usage errors need none
    try:
        build_parser().parse_args(arguments)
    except SystemExit as e:
        sys.exit(e.code)

    async def _main(reactor: Any) -> None:
        try:
            code = await run(arguments)
        except BrokenPipeError:
            _quiet_stdout()
            code = EXIT_OK
        except Exception as e:  # no traceback for the user, one line instead
            sys.stderr.write(f"pushctl: unexpected error: {e!r}\n")
            code = EXIT_REFUSED
        if code:
            raise SystemExit(code)

    react(_main)


def _quiet_stdout() -> None:
    """After a closed pipe (``pushctl ... | head``), let the exit flush go nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":  # pragma: no cover
    main()
