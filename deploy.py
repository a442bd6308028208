"""Smallstep PKI for etcd: run with `pyinfra inventory.py deploy.py`.

Phases, in order (each is one module in tasks/):
  validate -> install step -> step-ca (active cert-manager) -> trust the CA
  -> issue certificates
Every phase is idempotent: a second run changes nothing.
"""

from tasks.bootstrap import trust_ca
from tasks.ca import init_ca
from tasks.certs import issue_certificates
from tasks.common import this_host
from tasks.install import install_step

me = this_host()  # validates the whole inventory first; bad input stops here

install_step()
if me.is_active_ca:
    init_ca()
trust_ca()
issue_certificates()
