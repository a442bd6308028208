"""Rotate the CA without downtime: `pyinfra inventory.py rotate_ca.py --data rotate=KIND`.

    --data rotate=intermediate   a new intermediate signed by the same root; every
                                 certificate issued anew from it; etcd is not restarted
    --data rotate=root           a new root and intermediate, in phases recorded on the CA
                                 node: trust both, switch, trust the new one only (etcd
                                 members restart one at a time, twice)
    --data rotate_identity_file=PATH
                                 an age identity of `backup_recipients`, when the root key
                                 has its own password (intermediate rotation)
    --data rotate_again=true     rotate again after a rotation of that kind finished

Every host must be reachable. A run stopped anywhere is finished by running it again;
a finished rotation is not made again. See docs/rotation.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # found from any directory

from tasks.certs import issue_certificates
from tasks.crl import record_ledger
from tasks.rotation import (
    fetch_crl_now,
    finish_intermediate,
    finish_root,
    mark_root,
    prepare_root,
    restart_for_trust,
    rotate_intermediate,
    rotation_job,
    switch_root,
    trust_roots,
)
from tasks.run import get_plan, this_host
from tasks.standby import copy_ca_material

me = this_host()  # validates the whole inventory first
job = rotation_job()  # what to do, from the CA's record; None: done already
standbys = me.is_cert_manager and bool(get_plan().standbys)


def new_certificates() -> None:
    """Every certificate from the CA as it now is; the members' CRL from it too."""
    issue_certificates()
    if me.is_etcd:
        fetch_crl_now()
    if me.is_active_ca:
        record_ledger()


if job is not None and job.kind == "intermediate":
    if job.remains("switched") and me.is_active_ca:
        rotate_intermediate()
    if standbys:
        copy_ca_material()  # the new intermediate
    new_certificates()
    if me.is_active_ca:
        finish_intermediate()
    if standbys:
        copy_ca_material()  # the record

if job is not None and job.kind == "root":
    if job.remains("prepared"):
        if me.is_active_ca:
            prepare_root()
        if standbys:
            copy_ca_material()  # the next root, in case of a failover
    if job.remains("trusted"):
        trust_roots(both=True)
        restart_for_trust()
        if me.is_active_ca:
            mark_root("trusted")
    if job.remains("switched"):
        if me.is_active_ca:
            switch_root()
        if standbys:
            copy_ca_material()
    new_certificates()
    trust_roots(both=False)
    restart_for_trust()
    if me.is_active_ca:
        finish_root()
    if standbys:
        copy_ca_material()
