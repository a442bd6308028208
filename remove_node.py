"""Remove a node: `pyinfra inventory.py remove_node.py --limit HOST`.

HOST leaves the etcd cluster (`member remove`, through a surviving member), every
certificate it holds is revoked at the CA by serial (found in the CA's ledger, so its
key is not needed), every member takes the new CRL at once and restarts one at a time
(connections opened before stay usable otherwise), and HOST's etcd (its data kept
aside), renewal units, certificates and keys go. A node that cannot be reached (dead,
stolen, wiped) is removed the same way, named with --data from a run of the
cert-managers; the output lists what could not be done on it:

    pyinfra inventory.py remove_node.py --limit etcd_cert_managers --data node=HOST

Afterwards delete HOST from the inventory. Never for the active cert-manager (fail
over first). A re-run finishes a half-done removal. Steps: tasks/revocation.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # found from any directory

from tasks.revocation import remove_host

remove_host()
