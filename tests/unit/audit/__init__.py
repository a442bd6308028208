"""Unit tests of the audit's rules (etcd_pki.audit) on observations built with a real
(test) CA; the shared fixtures are in ``conftest.py``."""
