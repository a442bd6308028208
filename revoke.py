"""Revoke a host's certificates and give it new ones (a key that may be compromised):

    pyinfra inventory.py revoke.py --limit HOST [--data revoke_kinds=client,peer]

Every certificate of HOST (or the kinds named) is revoked at the CA by serial, found in
the CA's ledger and on HOST; HOST gets new keys (made on HOST) and certificates in the
same run; every etcd member takes the new CRL at once and restarts, one at a time, so
that no connection opened with a revoked certificate stays open. When HOST cannot be
reached, name it with --data and run from the cert-managers: its certificates are still
revoked, and the output says it got no new ones:

    pyinfra inventory.py revoke.py --limit etcd_cert_managers --data node=HOST

The CA's own host works the same way. Steps: tasks/revocation.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # found from any directory

from tasks.revocation import revoke_host

revoke_host()
