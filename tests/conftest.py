"""Shared fixtures. Keep this small: helpers live in tests/testbed.py."""

from __future__ import annotations

import pytest

from tests import testbed


@pytest.fixture(scope="session")
def bed() -> testbed.Bed:
    """The running Docker test bed (brought up once, reused if already up, never torn down).

    Leave it running after the session: ``make testbed-down`` removes it.
    """
    return testbed.up()
