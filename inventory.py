"""The cluster: etcd members, etcd clients and the cert-manager (the seed's example).

Each host needs an IP for its certificates: `address` (or an IP `ssh_hostname`).
Per-host extras: `extra_sans=[...]`. See README.md for every setting.
"""

etcd = [
    ("etcd-k8s-1", {"ssh_hostname": "10.0.1.10", "address": "10.0.1.10"}),
    ("etcd-k8s-2", {"ssh_hostname": "10.0.1.11", "address": "10.0.1.11"}),
    ("etcd-k8s-3", {"ssh_hostname": "10.0.1.12", "address": "10.0.1.12"}),
]

etcd_clients = [
    ("app-server", {"ssh_hostname": "10.0.2.50", "address": "10.0.2.50"}),
]

# The etcd node that also runs step-ca. Add standbys here and name the active one
# with `active_cert_manager` in group_data/all.py.
etcd_cert_managers = ["etcd-k8s-1"]
