"""Phase 3: the old active (etcd-k8s-1) comes back, listed as a standby."""

from __future__ import annotations

import pytest

from tests import testbed as tb

from ..conftest import deploy, sh
from .helpers import EXPECTED, ca_stats, inventory, is_active, is_enabled, material_digests

pytestmark = pytest.mark.e2e


def test_old_active_back_as_standby_stops_serving(failed_over):
    ha = failed_over
    tb.docker("start", tb.container_name("etcd-k8s-1"))
    tb.wait_for_boot("etcd-k8s-1")
    assert is_enabled("etcd-k8s-1") == "enabled"  # it would serve the old CA again
    inv = inventory(ha, "back", "etcd-k8s-2", ["etcd-k8s-2", "etcd-k8s-1"])
    run = deploy(inv)
    assert run.rc == 0, run.output[-4000:]
    ha.inventories["back"] = inv
    assert is_active("etcd-k8s-1") != "active" and is_enabled("etcd-k8s-1") != "enabled"
    assert list(material_digests("etcd-k8s-1").values()) == list(
        material_digests("etcd-k8s-2").values()
    )
    assert ca_stats("etcd-k8s-1") == EXPECTED
    assert f"https://{ha.bed.ip('etcd-k8s-2')}:9000" in sh(
        "etcd-k8s-1", "cat /etc/step/config/defaults.json"
    )
    again = deploy(inv)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()
