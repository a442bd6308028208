"""Shared fixtures. Keep this small: helpers live in tests/testbed/."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests import testbed as tb


@pytest.fixture(scope="session")
def testbed(pytestconfig: pytest.Config) -> Iterator[tb.Bed]:
    """The running Docker test bed, on new containers for each session.

    Test modules leave state behind on purpose (10-minute certificates, failed renewal
    runs, a removed CA node): a session that reused those containers would depend on
    what ran before. Image, binaries and network are kept, so this costs seconds;
    ``ETCD_PKI_REUSE_BED=1`` keeps the running containers instead. Not torn down at the
    end: ``make testbed-down`` removes it. Progress of the slow first-time steps (image,
    binaries) is shown live instead of being captured.
    """
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        bed = tb.up(fresh=os.environ.get("ETCD_PKI_REUSE_BED") != "1")
    yield bed
