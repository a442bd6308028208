"""Remove a node: `pyinfra inventory.py remove_node.py --limit etcd-k8s-4`.

The node leaves the etcd cluster (`member remove`), etcd stops there (its data dir is
kept aside, renamed), its certificates are revoked at the CA so they can no longer be
renewed, and its renewal units, certificates and keys are removed. Afterwards delete
the host from inventory.py. Run it for one host at a time; never for the active
cert-manager (fail over first).
"""

from pyinfra.api.exceptions import PyinfraError

from tasks.common import this_host
from tasks.etcd import remove_member

me = this_host()
if me.is_active_ca:
    raise PyinfraError(
        f"{me.name} runs the active CA: make another cert-manager active first (README: failover)"
    )
remove_member()
