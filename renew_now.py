"""Renew certificates now instead of waiting for the timers.

    pyinfra inventory.py renew_now.py                            # renew what is due
    pyinfra inventory.py renew_now.py --data renew_now_force=true  # renew everything

Starts each certificate's `step-renew-*.service`: the same path the timers take
(mTLS renewal, atomic replacement, owner and mode kept). Without force a certificate
that is not past `renew_threshold_percent` is skipped by the unit's condition. The new
certificates are then recorded in the CA's ledger (revocation by serial finds them).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # found from any directory

from pyinfra import host
from pyinfra.operations import server

from tasks.crl import record_renewals
from tasks.run import this_host

OVERRIDE = "/run/etcd-pki/renew-override"

me = this_host()
force = str(host.data.get("renew_now_force", False)).lower() in ("1", "true", "yes")
units = " ".join(f"{c.unit}.service" for c in me.certs)
if units:
    prefix = f"mkdir -p /run/etcd-pki && echo RENEW_AT=0% > {OVERRIDE} && " if force else ""
    server.shell(
        name=f"Start {units}" + (" (forced)" if force else " (renews what is due)"),
        commands=[f"{prefix}systemctl start {units}; rc=$?; rm -f {OVERRIDE}; exit $rc"],
    )
record_renewals()
