"""Shared fixtures. Keep this small: helpers live in tests/testbed.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import testbed as tb


@pytest.fixture(scope="session")
def testbed(pytestconfig: pytest.Config) -> Iterator[tb.Bed]:
    """The running Docker test bed: brought up once (reused when already up).

    Not torn down at the end: ``make testbed-down`` removes it. Progress of the slow
    first-time steps (image, binaries) is shown live instead of being captured.
    """
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        bed = tb.up()
    yield bed
