"""The twistd plugin and its options (CONTRACT 1)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

from pushd.tap import Options


def parse(*argv: str) -> Any:
    options = Options()
    options.parseOptions(list(argv))
    return options.config


def test_defaults_follow_the_contract() -> None:
    config = parse()
    assert config.listen == ("tcp:8080",)
    assert config.registration == "approve"
    assert config.data_dir == "./pushd-data"
    assert config.store_url == "sqlite:" + os.path.join("./pushd-data", "pushd.sqlite3")
    assert config.allow == ()


def test_repeatable_options_and_values() -> None:
    config = parse(
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--listen",
        "unix:/tmp/pushd-test.sock",
        "--allow",
        "SN1",
        "--allow",
        "SN2",
        "--registration",
        "open",
        "--store",
        "sqlite:/tmp/x.sqlite3",
        "--data-dir",
        "/tmp/pushd",
    )
    assert config.listen == ("tcp:0:interface=127.0.0.1", "unix:/tmp/pushd-test.sock")
    assert config.allow == ("SN1", "SN2")
    assert (config.registration, config.store_url, config.data_dir) == (
        "open",
        "sqlite:/tmp/x.sqlite3",
        "/tmp/pushd",
    )


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--registration", "maybe"], "--registration"),
        (["--listen", "nonsense:1"], "--listen"),
        (["--listen", "tcp:notaport"], "--listen"),
        (["--allow", "../etc"], "--allow"),
        (["--store", "mysql://x"], "--store"),
        (["--config", "/nonexistent/pushd.ini"], "--config"),
        (["--no-such-option"], "no-such-option"),
    ],
)
def test_invalid_options_name_the_option(argv: list, option: str) -> None:
    with pytest.raises(SystemExit, match=f"^twistd pushd: .*{option}"):
        parse(*argv)


def test_config_file_fills_what_the_command_line_leaves(tmp_path: Any) -> None:
    ini = tmp_path / "pushd.ini"
    ini.write_text(
        "[pushd]\nlisten = tcp:9001 tcp:9002\nregistration = open\nallow = A1 B2\n"
        "data-dir = /srv/pushd\n\n[options]\nDelay = 30\nTimeZone = 330\n"
    )
    config = parse("--config", str(ini), "--registration", "approve")
    assert config.listen == ("tcp:9001", "tcp:9002")
    assert config.registration == "approve"
    assert config.allow == ("A1", "B2") and config.data_dir == "/srv/pushd"
    assert config.option("Delay") == "30" and config.option("TimeZone") == "330"


def test_config_file_with_unknown_key_is_refused(tmp_path: Any) -> None:
    ini = tmp_path / "pushd.ini"
    ini.write_text("[pushd]\nlisten = tcp:9001\nlsiten = oops\n")
    with pytest.raises(SystemExit, match="unknown key 'lsiten'"):
        parse("--config", str(ini))


def test_the_plugin_is_found_by_twistd() -> None:
    import twisted.plugins

    makers = {p.tapname: p for p in getPlugins(IServiceMaker, twisted.plugins)}
    assert "pushd" in makers
    assert makers["pushd"].options is Options
