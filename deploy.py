"""Smallstep PKI for etcd: `pyinfra inventory.py deploy.py [--limit HOST]`.

Phases, in order, each one module in tasks/:
  validate the inventory            tasks/common.py (etcd_pki/plan.py)
  install step / step-ca            tasks/install.py
  install etcd (creates its user)   tasks/etcd.py
  refuse a CA-less failover target  tasks/redundancy.py
  age on cert-managers (standbys)   tasks/redundancy.py
  step-ca on the active manager     tasks/ca.py (with its CRL)
  revocations it must know again    tasks/crl.py (after a failover or restore)
  no CA keys on other hosts         tasks/redundancy.py
  trust the CA on every host        tasks/bootstrap.py
  issue certificates                tasks/certs.py
  renewal services and timers       tasks/renewal.py
  (the three at once on a new host,
   with its step install)           tasks/certs.py
  the CRL on every etcd member      tasks/crl.py
  etcd with mutual TLS and the CRL  tasks/etcd.py
  the CA's ledger of certificates   tasks/crl.py
  CA material on standbys           tasks/redundancy.py (encrypted end to end)
Every phase is idempotent: a second run changes nothing.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # found from any directory

from tasks.bootstrap import trust_ca
from tasks.ca import init_ca
from tasks.certs import first_certificates, is_new_host, issue_certificates
from tasks.common import get_plan, this_host
from tasks.crl import member_crl, reapply_revocations, record_ledger
from tasks.etcd import configure_etcd, install_etcd, report_health
from tasks.install import install_step
from tasks.redundancy import (
    check_ca_material,
    copy_ca_material,
    install_age,
    retire_ca_material,
    standby_ca,
)
from tasks.renewal import renewal_units

me = this_host()  # validates the whole inventory first: bad input stops here
check_ca_material()  # no second CA where the cluster already trusts one
new_host = is_new_host()  # none of its certificates yet
# A new host that holds no CA gets `step` in its first certificates' command instead.
step_with_certificates = new_host and not me.is_cert_manager

install_step(step=not step_with_certificates)
if me.is_etcd:
    install_etcd()
if me.is_cert_manager and (get_plan().standbys or me.settings.backup_recipients):
    install_age()  # standbys receive the CA material age-encrypted; the root key's password
if me.is_active_ca:
    init_ca()
    reapply_revocations()  # what its database lacks after a failover or restore
elif me.is_cert_manager:
    standby_ca()
else:
    retire_ca_material()  # a former cert-manager keeps no CA keys
if new_host:  # the three below in one command
    first_certificates(with_step=step_with_certificates)
else:
    trust_ca()
    issue_certificates()
    renewal_units()
if me.is_etcd:
    member_crl()  # the CRL in place before etcd starts with it
    configure_etcd()
    report_health()
if me.is_active_ca:
    record_ledger()  # the certificates issued in this run and since the last one
if me.is_cert_manager and get_plan().standbys:
    copy_ca_material()  # one operation on all cert-managers: runs after the CA's own
