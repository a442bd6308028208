"""Smallstep PKI for etcd: `pyinfra inventory.py deploy.py [--limit HOST]`.

Phases, in order, each one module in tasks/:
  validate the inventory                  tasks/run.py (etcd_pki/plan.py)
  no deploy during a root rotation        tasks/rotation.py
  refuse a CA-less failover target        tasks/standby.py
  install step / step-ca                  tasks/install.py
  install etcd (creates its user)         tasks/etcd.py
  age on cert-managers                    tasks/standby.py
  step-ca on the active cert-manager      tasks/ca.py (with its CRL)
  revocations it must know again          tasks/crl.py (after a failover or restore)
  step-ca stopped on standbys             tasks/standby.py
  no CA keys on other hosts               tasks/standby.py
  trust, certificates, renewal timers     tasks/certs.py (one command on a new host)
  the CRL on every etcd member            tasks/crl.py
  etcd users and roles (etcd_auth)        tasks/etcd_access.py
  etcd with mutual TLS and the CRL        tasks/etcd.py
  the metrics file for node_exporter      tasks/metrics.py (members: with the health report)
  the CA's ledger of certificates         tasks/crl.py
  CA material on standbys                 tasks/standby.py (encrypted end to end)
Every phase is idempotent: a second run changes nothing.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # found from any directory

from tasks.ca import init_ca
from tasks.certs import certificates, step_comes_with_certificates
from tasks.crl import member_crl, reapply_revocations, record_ledger
from tasks.etcd import configure_etcd, install_etcd, report_health
from tasks.etcd_access import etcd_access
from tasks.install import install_step
from tasks.metrics import refresh_metrics
from tasks.rotation import refuse_during_root_rotation
from tasks.run import get_plan, this_host
from tasks.standby import (
    check_ca_material,
    copy_ca_material,
    install_age,
    retire_ca_material,
    standby_ca,
)

me = this_host()  # validates the whole inventory first: bad input stops here
refuse_during_root_rotation()  # rotate_ca.py finishes it
check_ca_material()  # no second CA where the cluster already trusts one

install_step(step=not step_comes_with_certificates())
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
certificates()
if me.is_etcd:
    member_crl()  # the CRL in place before etcd starts with it
    etcd_access()  # a new member's user exists before it joins
    configure_etcd()
    etcd_access(new_cluster=True)  # a cluster made in this run: once it runs
    report_health()  # and the metrics file (tasks/metrics.py), in the same command
else:
    refresh_metrics()  # the metrics file, once this host's certificates are in place
if me.is_active_ca:
    record_ledger()  # the certificates issued in this run and since the last one
if me.is_cert_manager and get_plan().standbys:
    copy_ca_material()  # one operation on all cert-managers: runs after the CA's own
