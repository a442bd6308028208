"""Revocation that etcd enforces, on a fresh 4-host bed: the CRL on every member,
revoke.py, remove_node.py for a reachable client and for a dead member, bad CRLs, a CA
that is down, a CRL deleted by hand, and an older cluster upgraded without losing quorum.

One scenario in phases: the modules run in the order of their numbers (pytest collects a
directory in name order) and build on each other, on the bed of ``conftest.py``;
``helpers.py`` holds the shared checks. Every check reads results back from the
containers (openssl, etcdctl, stat, systemctl, journalctl), and certificates are tried
for real against every member, copies of them kept aside by the test.
"""
