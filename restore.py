"""Restore the CA from an encrypted backup onto the active cert-manager:

    pyinfra inventory.py restore.py --data restore_from=backups/FILE.tar.age \
        --data restore_identity_file=/path/to/age-identity.txt [--data restore_force=true]
    pyinfra inventory.py deploy.py      # starts step-ca there and re-points every host

Name the (fresh) node as `active_cert_manager` in the inventory first. A backup of
another root than the one the cluster trusts is refused unless `restore_force=true`;
with `backup_mac_key_file` set, one without a valid MAC (FILE.mac) always is. The identity
(private key) is read on the controller, streamed to the node on stdin and used there
in /run (tmpfs); it is never written to the controller's disk by the deploy nor
printed. A node that already holds a different CA is refused unless
`restore_force=true`, which moves its CA directory aside (nothing is deleted).
Other hosts are not touched.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # found from any directory

from tasks.backup import restore_ca
from tasks.run import this_host

me = this_host()
if me.is_active_ca:
    restore_ca()
