"""Every shell command the deploy runs on a host, built by pure functions (no pyinfra).

One module per concern; tasks/ decide *whether* to run them, these say *what* runs:

  shell.py    fragments every builder shares (exit traps, the key/certificate swap)
  files.py    directories, owners and modes, links, atomic writes, units enabled
  install.py  download, verify (sha256) and install release binaries
  ca.py       `step ca init`, the provisioner's claims and template, the CRL setting,
              the root key's own password, names and URL in the CA's configuration
  tokens.py   one-time tokens and revocation with the provisioner's key (on the CA)
  certs.py    issuance on a host (key made there), the trusted root, step's defaults
  etcd.py     etcdctl with the host's client certificate, rolling restarts
  crl.py      the members' CRL fetch, the CA's ledger scan
  backup.py   the CA material: digests, age encryption, install on a standby, restore

Values reach these as plan values that etcd_pki/settings.py and etcd_pki/plan.py have
validated to the characters they need; anything else is quoted with shlex.quote where
it is used. Secrets never appear in a command: they travel on stdin or stay on the host.
"""
