"""Shared test set-up: hypothesis profiles (CI runs more examples), the in-memory server."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from pushd.testing import TestServer

settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "fast", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def server(tmp_path: Any) -> TestServer:
    """A whole pushd application in memory (memory store, open registration)."""
    from tests.test_web_iclock import make_server

    return make_server(tmp_path)
