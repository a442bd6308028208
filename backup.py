"""Encrypted backup of the CA: `pyinfra inventory.py backup.py`.

On the active cert-manager, the CA material (ca.json, defaults.json, root and
intermediate certificates and keys, password files) and step-ca's database (db/:
issued-certificate records, revocations; step-ca is stopped for the moment it takes to
archive it) are archived and encrypted there with age to every key in
`backup_recipients`; only the ciphertext comes back, into `backup_dir` on the controller
as CA-NAME_NODE_YYYYMMDDTHHMMSSZ.tar.age (mode 0600), and to S3-compatible storage when
`backup_s3_endpoint` is set. Other hosts are not touched. Restore with restore.py and
one of the recipients' identities.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # found from any directory

from tasks.backup import take_backup
from tasks.run import this_host

me = this_host()
if me.is_active_ca:
    take_backup()
