"""Audit the PKI: `pyinfra inventory.py audit.py [--limit HOST]`.

Changes nothing on any host (every check is a fact; the summary shows no change).
Checks, per host and against the same plan the deploy uses (etcd_pki/plan.py): owner
and mode of every key and CA file; CA keys and passwords on cert-managers only; no
stray private key; each certificate chains to the root, matches its key, has the
planned subject, SANs and EKUs, is not expired or overdue for renewal, and has its
renewal timer enabled and active; step-ca running on the active cert-manager. It also
scans the controller (this repository and the temp dirs) for private keys.

Prints every finding as HOST: FILE: RULE: DETAIL and a summary, and exits non-zero
when any rule is broken (warnings, such as a renewal that is due, do not fail).
Options: --data audit_json=PATH, audit_controller_dirs=[...], audit_secret_roots=[...].
Rules: etcd_pki/audit.py RULES.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # found from any directory

from tasks.audit import audit_host

audit_host()
