"""Crypto transports are Twisted plugins of ``pushd.plugins``, found by name."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from twisted.plugin import IPlugin
from zope.interface.verify import verifyObject

from pushd.crypto import registry
from pushd.crypto.transports import PlainTransport, PlainTransportFactory
from pushd.interfaces import ICryptoTransport, ICryptoTransportFactory

ROOT = Path(__file__).resolve().parent.parent


def test_both_built_in_transports_are_found_by_name() -> None:
    factories = registry.transport_factories()
    assert {"plain", "zkx1"} <= set(factories)
    for name, factory in factories.items():
        assert factory.name == name
        assert verifyObject(ICryptoTransportFactory, factory)
        assert IPlugin.providedBy(factory)
        assert factory.description


def test_the_plain_transport_is_built_by_name(tmp_path: Path) -> None:
    transport = registry.build_transport("plain", str(tmp_path))
    assert isinstance(transport, PlainTransport)
    assert verifyObject(ICryptoTransport, transport)
    assert os.listdir(tmp_path) == []  # no key needed


def test_an_unknown_name_lists_the_installed_transports(tmp_path: Path) -> None:
    with pytest.raises(KeyError) as failure:
        registry.build_transport("rot13", str(tmp_path))
    assert "plain" in str(failure.value) and "zkx1" in str(failure.value)


def test_two_plugins_with_one_name_are_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    doubles = [PlainTransportFactory(), PlainTransportFactory()]
    monkeypatch.setattr(registry, "getPlugins", lambda interface, package: iter(doubles))
    with pytest.raises(ValueError):
        registry.transport_factories()


def test_a_third_party_package_adds_a_transport(tmp_path: Path) -> None:
    """A ``pushd/plugins/<module>.py`` elsewhere on sys.path, without ``__init__.py``."""
    plugins = tmp_path / "pushd" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "acme_crypto.py").write_text(
        textwrap.dedent(
            """
            from twisted.plugin import IPlugin
            from zope.interface import implementer

            from pushd.crypto.transports import PlainTransport
            from pushd.interfaces import ICryptoTransportFactory


            @implementer(IPlugin, ICryptoTransportFactory)
            class AcmeFactory:
                name = "acme"
                description = "a third-party transport"

                def build(self, data_dir):
                    return PlainTransport()


            acme = AcmeFactory()
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    script = (
        "from pushd.crypto.registry import transport_factories\n"
        "print(','.join(sorted(transport_factories())))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "acme,plain,zkx1"
