"""remove_node.py on a reachable client, which then comes back."""

from __future__ import annotations

import pytest

from ..conftest import ETCD_HOSTS, SSL, read_cert, sh
from .helpers import (
    as_member,
    crl_serials,
    events,
    ledger,
    refused_everywhere,
    save,
    ssh,
    wait_for,
    watch,
    works_everywhere,
)

pytestmark = pytest.mark.e2e


def test_a_removed_clients_certificate_is_refused_by_every_member(bed):
    crt, key = save("app-server", "app-server-client", "app-server")
    serial = read_cert("app-server", crt).serial_number
    works_everywhere("app-server", crt, key)
    log = watch("app-server", crt, key, "etcd-k8s-2", "held")
    wait_for(
        lambda: (
            as_member("etcd-k8s-1", "put", "held", "before")[0] == 0
            and events("app-server", log, "held") == ["before"]
        ),
        "the watch saw nothing",
    )

    run = ssh(bed, "remove_node.py", "--limit", "app-server")
    assert run.rc == 0, run.output[-4000:]
    assert "restarted" in run.output and "no connection of a revoked certificate" in run.output

    refused_everywhere("app-server", crt, key)
    for member in ETCD_HOSTS:
        assert serial in crl_serials(member), member
    # The watch opened before the removal gets nothing written after it.
    assert as_member("etcd-k8s-1", "put", "held", "after")[0] == 0
    assert events("app-server", log, "held") == ["before"]
    assert (
        sh(
            "app-server",
            f"ls {SSL}/app-server-client.crt /etc/systemd/system/step-renew-* 2>/dev/null || true",
        ).strip()
        == ""
    )
    revoked = [row for row in ledger() if row[0] == "revoked"]
    assert [(r[1], r[2], r[4]) for r in revoked] == [
        (str(serial), "app-server-client", "member removed")
    ]


def test_the_removed_client_comes_back_with_a_new_certificate(bed):
    run = ssh(bed, "deploy.py", "--limit", "app-server")
    assert run.rc == 0, run.output[-4000:]
    works_everywhere("app-server", f"{SSL}/app-server-client.crt", f"{SSL}/app-server-client.key")
