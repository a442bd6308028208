"""The bed all phases share: fresh containers, deployed once (package scope)."""

from __future__ import annotations

import pytest

from tests import testbed as tb

from ..conftest import deploy


@pytest.fixture(scope="package")
def bed(testbed):
    bed = tb.up(fresh=True)
    run = deploy(bed.inventory_docker)
    assert run.rc == 0, run.output[-4000:]
    return bed
