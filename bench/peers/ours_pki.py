"""Our side of the peer comparison: deploy.py's phases up to the end of issuance.

The same lines as deploy.py, in the same order, up to and including ``certificates()``
(trust, certificates, and their renewal timers, which a new host gets in the same
command as its certificates), without what the peer has no equivalent of: etcd (its
install, users and roles, configuration, health), the CRL on members, the CA's ledger
and standbys (the bench's cluster has none). Run from the repository root, like
deploy.py: ``pyinfra -y INVENTORY bench/peers/ours_pki.py``.

Its hosts' snapshot reads what deploy.py's reads, less etcd access's (users and roles,
`etcd_auth`): that read asks a running etcd over TLS with certificates that do not
exist yet on these hosts, and waits for its timeout (10 s), for a task that does not
run here.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root

import tasks.reads
from tasks import etcd_access
from tasks.ca import init_ca
from tasks.certs import certificates, step_comes_with_certificates
from tasks.crl import reapply_revocations
from tasks.install import install_step
from tasks.rotation import refuse_during_root_rotation
from tasks.run import this_host
from tasks.standby import check_ca_material, retire_ca_material, standby_ca

SKIPPED = (etcd_access.reads,)
tasks.reads.READS = tuple(r for r in tasks.reads.READS if r not in SKIPPED)

me = this_host()
refuse_during_root_rotation()
check_ca_material()

install_step(step=not step_comes_with_certificates())
if me.is_active_ca:
    init_ca()
    reapply_revocations()
elif me.is_cert_manager:
    standby_ca()
else:
    retire_ca_material()
certificates()
