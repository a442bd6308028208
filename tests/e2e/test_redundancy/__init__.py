"""CA redundancy on one bed: a standby, failover, the old active's return, an encrypted
backup (local and to S3) and its restore onto a fresh node, then a demotion.

One scenario in phases: the modules run in the order of their numbers (pytest collects a
directory in name order) and each phase builds on the one before, through the
package-scoped fixtures of ``conftest.py``; ``helpers.py`` holds the shared state and
checks. Results are read back from the containers with openssl, sha256sum, stat,
systemctl and step-ca's journal, not through the deploy's code.
"""
