"""What a host's snapshot reads: every task's wants, declared in one place.

The first `snapshot()` on a host (tasks/run.py) reads all of these in one command, so a
re-run that changes nothing costs one round trip per host to learn its state. Each entry
is a function of the host's plan; a task that needs something new adds its want to its
own `reads` and the function here, or its `snapshot(...)` call costs a command of its own.
"""

from __future__ import annotations

from collections.abc import Callable

from etcd_pki.plan import HostPlan
from facts.snapshot import Want
from tasks import bootstrap, ca, certs, crl, etcd, etcd_access, install, renewal, standby
from tasks.run import active_ca_reads, requirements_reads

READS: tuple[Callable[[HostPlan], Want], ...] = (
    requirements_reads,  # who runs the commands, the tools there (tasks/run.py: this_host)
    active_ca_reads,  # whether the active CA exists, its root
    install.reads,  # step/step-ca/etcd versions, the architecture, bin_dir
    etcd.reads,  # etcd's unit, environment, membership files
    ca.reads,  # a cert-manager's CA files, account, unit; the active CA's ca.json facts
    standby.reads,  # whether the host holds a CA; age
    bootstrap.reads,  # the trusted root, CA links, step's configuration
    certs.reads,  # the host's certificates and keys, interrupted issuances
    renewal.reads,  # renewal units
    crl.member_reads,  # the CRL units on etcd members
    crl.ca_reads,  # the active CA's CRL, intermediate, ledger and what step-ca logged
    etcd_access.reads,  # etcd's authentication, users and roles (etcd_auth)
)
