"""Smallstep PKI for etcd: `pyinfra inventory.py deploy.py [--limit HOST]`.

Phases, in order, each one module in tasks/:
  validate the inventory            tasks/common.py (etcd_pki/plan.py)
  install step / step-ca            tasks/install.py
  install etcd (creates its user)   tasks/etcd.py
  step-ca on the active manager     tasks/ca.py
  trust the CA on every host        tasks/bootstrap.py
  issue certificates                tasks/certs.py
  renewal services and timers       tasks/renewal.py
  etcd with mutual TLS              tasks/etcd.py
Every phase is idempotent: a second run changes nothing.
"""

from tasks.bootstrap import trust_ca
from tasks.ca import init_ca
from tasks.certs import issue_certificates
from tasks.common import this_host
from tasks.etcd import configure_etcd, install_etcd, report_health
from tasks.install import install_step
from tasks.renewal import renewal_units

me = this_host()  # validates the whole inventory first: bad input stops here

install_step()
if me.is_etcd:
    install_etcd()
if me.is_active_ca:
    init_ca()
trust_ca()
issue_certificates()
renewal_units()
if me.is_etcd:
    configure_etcd()
    report_health()
