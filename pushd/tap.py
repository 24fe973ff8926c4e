# -*- test-case-name: tests.test_tap -*-
"""
``twistd pushd``: command-line options and ``makeService``.

Options come from the command line and, for anything not given there, from
the ``[pushd]`` section of ``--config FILE`` (same names, without dashes:
``listen = tcp:8080 tcp:8088``, ``allow = SN1 SN2``).  The ``[options]``
section overrides the values of the options block sent to every device
(spec 5 names: ``Delay = 30``, ``TimeZone = 330``...).
"""

from __future__ import annotations

import configparser
import os
import re
import sys
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple

from twisted.application.service import IService
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from pushd.commands import CommandSettings, parse_allowed_families
from pushd.config import Config, default_options, local_utc_offset_minutes
from pushd.logs import json_observer
from pushd.plugin_api import select_plugins

__all__ = ["Options", "makeService"]

_SN = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
_STORE_SCHEMES = ("sqlite:", "memory:", "postgresql:", "postgres:")


class Options(usage.Options):
    """The options of ``twistd pushd`` (CONTRACT 1)."""

    synopsis = "[options]"
    longdesc = (
        "Serve ZKTeco attendance and access terminals speaking the PUSH "
        "(ADMS/iclock) protocol, storing everything they send before answering OK."
    )

    optParameters = [
        [
            "store",
            None,
            None,
            "Store URL: sqlite:PATH or postgresql://... [default: sqlite:<data-dir>/pushd.sqlite3]",
        ],
        [
            "data-dir",
            None,
            None,
            "Directory for the database, photos and generated files [default: ./pushd-data]",
        ],
        [
            "registration",
            None,
            None,
            "open: accept every device; approve: unknown devices wait for approval"
            " [default: approve]",
        ],
        [
            "api",
            None,
            None,
            "REST API listener, a Twisted endpoint, or 'none'"
            " [default: tcp:8081:interface=127.0.0.1]",
        ],
        [
            "api-token",
            None,
            None,
            "Bearer token of the REST API [default: env PUSHD_API_TOKEN, else generated"
            " once and saved 0600 as <data-dir>/api-token]",
        ],
        [
            "sink-secret",
            None,
            None,
            "HMAC-SHA256 key for webhook signatures [default: env PUSHD_SINK_SECRET]",
        ],
        [
            "log-format",
            None,
            "text",
            "text, or json: one JSON object per log event, where twistd would write its log",
        ],
        [
            "allow-commands",
            None,
            None,
            "Command families allowed besides the standard ones: comma list of shell,"
            " files (GetFile/PutFile), upgrade; or all [default: standard]",
        ],
        [
            "config",
            None,
            None,
            "INI file: the same keys in [pushd] (the command line wins),"
            " device option values in [options]",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["allow"] = []
        self["sync-group"] = []
        self["plugin"] = []
        self["sink"] = []

    def opt_listen(self, description: str) -> None:
        """Device-facing listener, a Twisted endpoint string (repeatable) [default: tcp:8080]"""
        self["listen"].append(description)

    def opt_allow(self, sn: str) -> None:
        """Pre-approved device serial number (repeatable)"""
        self["allow"].append(sn)

    def opt_sink(self, url: str) -> None:
        """Event sink (repeatable): https://... or http://... (webhook), mqtt://host:port/prefix,
        file:///path.jsonl, or - (standard output)"""
        self["sink"].append(url)

    def opt_plugin(self, name: str) -> None:
        """Enable an installed plugin by name (repeatable; see --help-plugins)"""
        self["plugin"].append(name)

    def opt_help_plugins(self) -> None:
        """List the installed plugins and exit"""
        from pushd.plugin_api import installed_plugins, plugin_roles

        plugins = installed_plugins()
        if not plugins:
            print("No pushd plugins are installed.")
        for name, plugin in sorted(plugins.items()):
            roles = "; ".join(plugin_roles(plugin)) or "nothing"
            print(f"{name}: {getattr(plugin, 'description', '')} ({roles})")
        raise SystemExit(0)

    def opt_sync_group(self, name: str) -> None:
        """Device group whose devices share users enrolled on any of them (repeatable)"""
        self["sync-group"].append(name)

    def parseOptions(self, options: Optional[Sequence[str]] = None) -> None:
        """
        Parse, and turn a usage error into a one-line message and exit status 1.

        (twistd before Twisted 26 prints usage errors and exits 0, which
        service managers and scripts would take for success.)
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as error:
            raise SystemExit(f"twistd pushd: {error}") from None

    def postOptions(self) -> None:
        if self["log-format"] not in ("text", "json"):
            raise usage.UsageError(
                f"--log-format: expected text or json, not {self['log-format']!r}"
            )
        self.config = build_config(self)


def _read_ini(path: str) -> Tuple[Dict[str, str], List[Tuple[str, str]]]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise usage.UsageError(f"--config: cannot read {path}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise usage.UsageError(f"--config: {path} is not a valid INI file: {exc}") from None
    section = {k.lower(): v for k, v in parser["pushd"].items()} if "pushd" in parser else {}
    options = list(parser["options"].items()) if "options" in parser else []
    for name in parser.sections():
        if name.startswith("plugin:"):
            section["plugin:" + name[len("plugin:") :]] = "\n".join(
                f"{k}={v}" for k, v in parser[name].items()
            )
    return section, options


def _pick(opts: usage.Options, ini: Dict[str, str], name: str) -> Optional[str]:
    value = opts[name]
    if value is None:
        value = ini.get(name, ini.get(name.replace("-", "_")))
    return value


def _many(opts: usage.Options, ini: Dict[str, str], name: str) -> List[str]:
    values: List[str] = list(opts[name])
    if not values and name in ini:
        values = ini[name].split()
    return values


def _check_listen(descriptions: Sequence[str], option: str = "--listen") -> None:
    from twisted.internet import reactor

    for description in descriptions:
        try:
            serverFromString(reactor, description)
        except (ValueError, TypeError, KeyError) as exc:
            raise usage.UsageError(f"{option}: invalid endpoint {description!r}: {exc}") from None


def build_config(opts: usage.Options) -> Config:
    """Merge the command line with ``--config`` and validate everything."""
    ini: Dict[str, str] = {}
    option_overrides: List[Tuple[str, str]] = []
    if opts["config"]:
        ini, option_overrides = _read_ini(opts["config"])
    known = {
        "listen",
        "allow",
        "store",
        "data-dir",
        "data_dir",
        "registration",
        "api",
        "api-token",
        "api_token",
        "allow-commands",
        "allow_commands",
        "sync-group",
        "sync_group",
        "plugin",
        "sink",
        "sink-secret",
        "sink_secret",
    }
    plugin_config = {
        key[len("plugin:") :]: dict(line.split("=", 1) for line in value.splitlines() if line)
        for key, value in ini.items()
        if key.startswith("plugin:")
    }
    for key in ini:
        if key not in known and not key.startswith("plugin:"):
            raise usage.UsageError(f"--config: unknown key {key!r} in [pushd]")

    listen = _many(opts, ini, "listen") or ["tcp:8080"]
    _check_listen(listen)

    registration = (_pick(opts, ini, "registration") or "approve").strip().lower()
    if registration not in ("open", "approve"):
        raise usage.UsageError(
            f"--registration: expected 'open' or 'approve', not {registration!r}"
        )

    allow = _many(opts, ini, "allow")
    for sn in allow:
        if not _SN.match(sn):
            raise usage.UsageError(
                f"--allow: {sn!r} is not a serial number (letters, digits, - and _)"
            )

    store = (_pick(opts, ini, "store") or "").strip()
    if store and not store.startswith(_STORE_SCHEMES):
        raise usage.UsageError(f"--store: expected sqlite:PATH or postgresql://..., not {store!r}")

    data_dir = (_pick(opts, ini, "data-dir") or "./pushd-data").strip()
    if not data_dir:
        raise usage.UsageError("--data-dir: must not be empty")

    api = (_pick(opts, ini, "api") or "tcp:8081:interface=127.0.0.1").strip()
    if api.lower() != "none":
        _check_listen([api], option="--api")
    try:
        allowed = parse_allowed_families(_pick(opts, ini, "allow-commands") or "standard")
    except ValueError as exc:
        raise usage.UsageError(f"--allow-commands: {exc}") from None

    plugins = _many(opts, ini, "plugin")
    try:
        select_plugins(plugins)
    except ValueError as exc:
        raise usage.UsageError(f"--plugin: {exc}") from None

    defaults = dict(default_options(local_utc_offset_minutes()))
    for key, value in option_overrides:
        defaults[key] = value
    return Config(
        listen=tuple(listen),
        store=store,
        data_dir=data_dir,
        registration=registration,
        allow=tuple(allow),
        options=tuple(defaults.items()),
        api="none" if api.lower() == "none" else api,
        api_token=(_pick(opts, ini, "api-token") or "").strip(),
        commands=CommandSettings(allowed=allowed),
        sync_groups=tuple(_many(opts, ini, "sync-group")),
        plugins=tuple(plugins),
        plugin_config=plugin_config,
        sinks=tuple(_many(opts, ini, "sink")),
        sink_secret=(_pick(opts, ini, "sink-secret") or os.environ.get("PUSHD_SINK_SECRET", "")),
    )


def makeService(options: Options) -> IService:
    """Called by twistd with the parsed options."""
    from twisted.internet import reactor

    from pushd.service import build_service

    try:
        plugins = select_plugins(options.config.plugins)
        service = build_service(options.config, reactor, plugins=plugins)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"pushd: cannot start: {exc}") from None
    if options["log-format"] == "json":
        service.log_observer = json_observer(_log_stream(getattr(options, "parent", None)))
    return service


def _log_stream(twistd: Any) -> IO[str]:
    """Where twistd would write its log: standard output with -n, else its --logfile."""
    if twistd is None:
        return sys.stdout
    logfile = twistd.get("logfile")
    if logfile in (None, "", "-") and twistd.get("nodaemon"):
        return sys.stdout
    return open(logfile or "twistd.log", "a", encoding="utf-8")
