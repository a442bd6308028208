"""Defaults for every host. Override per group (group_data/<group>.py), per host
(inventory host data) or per run (``pyinfra ... --data key=value``).

Every setting the deploy reads has its default here, with a comment. Each is declared,
with its type, check and one line of documentation, as a field of `Settings` in
etcd_pki/settings.py; tests/unit/test_settings_spec.py fails when this file and that
spec disagree (a setting missing or a different default).
"""

# ---------------------------------------------------------------------------
# Smallstep binaries
# ---------------------------------------------------------------------------

# Pinned versions of the `step` CLI (every host) and `step-ca` (cert-managers).
step_version = "0.30.6"
step_ca_version = "0.30.2"

# Optional pinned sha256 of the release tarballs, per architecture
# ({"amd64": "<64 hex>"}). When a pin is missing the deploy verifies against the
# release's published checksums.txt from the same source instead.
step_sha256: dict[str, str] = {}
step_ca_sha256: dict[str, str] = {}

# Where the tarballs come from:
#   "github"     - the official release URLs (https://github.com/smallstep/...)
#   "mirror"     - `install_mirror_url`, a base URL with GitHub's layout:
#                  {base}/cli/releases/download/v{version}/step_linux_{version}_{arch}.tar.gz
#                  {base}/certificates/releases/download/v{version}/step-ca_linux_...
#   "controller" - `install_controller_dir`, a directory on the controller with the
#                  same layout (air-gapped sites); files are uploaded to each host.
# With "github" and "mirror" each host downloads with curl or wget (one must be
# installed). Tarballs are kept in /var/cache/etcd-pki (root only). A plain-http mirror
# needs step_sha256 (and step_ca_sha256 for cert-managers) pinned: its checksums.txt
# would come from the same unauthenticated server.
install_source = "github"
install_mirror_url: str | None = None
install_controller_dir: str | None = None

# Directory the binaries are installed into.
bin_dir = "/opt/bin"

# ---------------------------------------------------------------------------
# The certificate authority (step-ca on the active cert-manager)
# ---------------------------------------------------------------------------

# The cert-manager that runs step-ca. None = the only host in the inventory group
# `etcd_cert_managers`; with standbys in that group, name the active one here.
# Failover: set this to a standby and re-run the deploy.
active_cert_manager: str | None = None
# $STEPPATH of step-ca: config/, certs/, secrets/, db/ live here.
ca_dir = "/etc/step-ca"
# System user step-ca runs as; it owns the intermediate key (the root key stays root's).
ca_user = "step"
# Name written into the root and intermediate certificates.
ca_name = "etcd-default-ca"
# Lifetimes of the root and the intermediate that rotate_ca.py makes (docs/rotation.md);
# a new CA gets `step ca init`'s (10 years each). The audit warns a year before either
# expires, and when a certificate would outlive its issuer.
ca_root_lifetime = "87600h"  # 10 years
ca_intermediate_lifetime = "43800h"  # 5 years
# Port step-ca listens on (all addresses).
ca_port = 9000
# JWK provisioner that signs the one-time tokens the nodes redeem.
ca_provisioner = "etcd-provisioner"
# Extra DNS names / IPs for the CA's own TLS certificate. The active cert-manager's
# name, FQDN and address are always included; add load-balancer names here.
ca_extra_sans: list[str] = []
# $STEPPATH of the `step` CLI on every host: the deploy writes the CA URL, root
# fingerprint and root here (as `step ca bootstrap` would, without asking the CA),
# and the renewal services read them from here.
step_dir = "/etc/step"
# Opt in to adding the private root to each host's system trust store (Debian's
# update-ca-certificates, as /usr/local/share/ca-certificates/etcd-pki-root_ca.crt);
# set back to False, the next run takes it out again. etcd does not need it.
install_root_in_trust_store = False

# ---------------------------------------------------------------------------
# Revocation (docs/revocation.md): step-ca publishes a CRL, every etcd member enforces it
# ---------------------------------------------------------------------------

# How long a CRL is valid (its nextUpdate): step-ca's crl.cacheDuration. step-ca makes
# a new one at 2/3 of it and on every revocation. etcd does not check nextUpdate itself
# (an old CRL still blocks what it lists); the members' fetch and the audit do.
crl_cache_duration = "24h"
# When each member fetches and checks the CRL (systemd OnCalendar) and the random
# spread. The deploy, remove_node.py and revoke.py also push a new CRL at once.
crl_fetch_on_calendar = "hourly"
crl_fetch_randomized_delay = "5m"

# ---------------------------------------------------------------------------
# Monitoring (docs/metrics.md)
# ---------------------------------------------------------------------------

# Every host writes etcd_pki.prom here for node_exporter's textfile collector
# (--collector.textfile.directory; this is Debian's prometheus-node-exporter default).
# The renewal units, the CRL fetch and every deploy rewrite it; made if missing.
metrics_dir = "/var/lib/prometheus/node-exporter"

# ---------------------------------------------------------------------------
# CA redundancy: standbys, backups (docs/operations.md: failover, backup and restore)
# ---------------------------------------------------------------------------

# Standbys are the other hosts of group `etcd_cert_managers`: the deploy copies the CA
# material to each one encrypted with age to a key made on the standby for that one
# transfer; step-ca is installed there but not running.
# age public keys (`age1...`, from `age-keygen -y KEYFILE`) that `backup.py` encrypts
# the CA backup to. Keep the matching identities (private keys) offline; `restore.py`
# needs one of them. Empty: backup.py refuses to run.
backup_recipients: list[str] = []
# Directory on the controller that receives the encrypted backups (timestamped names).
# A relative path is relative to this repository (git-ignored).
backup_dir = "backups"
# Optional copy of each backup in S3-compatible storage (AWS S3, MinIO, Ceph RGW,
# Garage, ...), uploaded by the controller (boto3) right after it is written to
# `backup_dir`. Empty endpoint: no upload. The endpoint is https://host[:port];
# requests are path-style (ENDPOINT/BUCKET/PREFIX+NAME) and signed with AWS SigV4; a
# redirect is never followed. Credentials come from boto3's chain on the controller
# (AWS_* environment, ~/.aws profiles (AWS_PROFILE), SSO, instance metadata,
# credential_process), never from here. Only age ciphertext is uploaded.
backup_s3_endpoint = ""  # e.g. "https://s3.eu-west-1.amazonaws.com"
backup_s3_bucket = ""
backup_s3_prefix = "etcd-pki/"  # "folder/" names, or "" for the bucket's top
backup_s3_region = "us-east-1"
# CA bundle (PEM, on the controller) to verify the endpoint's TLS certificate, for
# storage behind a private CA; empty: the controller's system trust store.
backup_s3_ca_file = ""
# A plain http:// endpoint is refused unless this is True (a test server, a loopback).
backup_s3_allow_http = False
# A secret key (32 or more random bytes, mode 0600) in a file on the controller that
# authenticates backups: backup.py writes FILE.tar.age.mac (HMAC-SHA256) beside each
# backup (and uploads it), restore.py refuses a backup without a valid one. Anyone who
# knows a public age recipient can make a backup that decrypts; only the holder of this
# key can make one that restores. Empty: backups are not authenticated.
# Make one with: head -c 32 /dev/urandom > ~/.etcd-pki-backup.mac && chmod 600 ...
backup_mac_key_file = ""

# ---------------------------------------------------------------------------
# Leaf certificates
# ---------------------------------------------------------------------------

# Directory holding each host's certificates, keys and root_ca.crt.
ssl_dir = "/etc/etcd/ssl"
# DNS domain appended to a host's name for its FQDN SAN (etcd-k8s-2.local).
dns_domain = "local"
# Lifetimes (Go durations: h, m, s). The CA's claims are set from these, so the
# CA refuses anything outside min..max. min <= default <= max.
cert_lifetime = "17520h"  # 2 years: what every certificate is issued for
cert_lifetime_max = "26280h"  # 3 years
cert_lifetime_min = "1h"
# Key type for leaf keys: "EC" (P-256), "RSA" (2048), "OKP" (Ed25519).
key_type = "EC"
# Owner of the client key on hosts that are only etcd clients (the application
# user that reads it). etcd hosts' keys always belong to `etcd_user`.
client_key_owner = "root"
# Extra SANs for every certificate of one host: set in that host's inventory data.
extra_sans: list[str] = []

# ---------------------------------------------------------------------------
# Renewal (a systemd service + timer per certificate)
# ---------------------------------------------------------------------------

# Renew once this percentage of the lifetime has passed (66 = the usual 2/3).
renew_threshold_percent = 66
# "renew" keeps the key; "rekey" makes a new key at every renewal.
renew_mode = "renew"
# When the timers fire (systemd OnCalendar), the random spread, and whether a
# missed run (host off at 03:00) happens at next boot.
renew_on_calendar = "*-*-* 03:00:00"
renew_randomized_delay = "1h"
renew_persistent = True
# Command run after a successful renewal (e.g. reload an app on a client host).
# etcd needs none: it reads its certificates on every new TLS handshake.
renew_post_command: str | None = None

# ---------------------------------------------------------------------------
# etcd
# ---------------------------------------------------------------------------

# User etcd runs as (Debian's package creates it); it owns the etcd hosts' keys.
etcd_user = "etcd"
# systemd service name of etcd (Debian: "etcd"; the seed used "etcd-k8s-X"). The
# deploy writes its own unit under this name, replacing the package's default etcd.
etcd_service_name = "etcd"
# Cluster name: the initial-cluster token and the data directory's name. A data
# directory of another cluster is never reused: ours is /var/lib/etcd/<cluster>.
etcd_cluster_name = "etcd-cluster"
etcd_data_root = "/var/lib/etcd"
etcd_client_port = 2379
etcd_peer_port = 2380
# TLS on both ports: the oldest protocol version etcd accepts ("TLS1.2" or "TLS1.3"), and
# the TLS 1.2 cipher suites (Go's names; TLS 1.3 suites are fixed). Forward secret AEAD
# suites only, by default.
etcd_tls_min_version = "TLS1.2"
etcd_cipher_suites: list[str] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
]
# etcd's role-based access control from certificate identity (docs/etcd-auth.md); off by
# default. On, etcd names each client by its certificate's common name (no password):
# the members' own client certificates (NODE-client) have the root role; each user below
# (a common name, like "app-server-client") gets its roles, each role read and/or write
# on key prefixes. The deploy then owns etcd's users and roles: others are removed.
# Turned off again: authentication is disabled (users and roles stay, unused). Example:
#   etcd_auth = {"enabled": True,
#                "roles": {"app": {"/app/": "readwrite", "/config/": "read"}},
#                "users": {"app-server-client": ["app"]}}
etcd_auth: dict = {"enabled": False, "roles": {}, "users": {}}
# Where etcd comes from: "debian" (packages etcd-server, etcd-client) or "release"
# (the official tarball: etcd, etcdctl, etcdutl installed into bin_dir; the deploy
# then also creates the `etcd_user` system user and `etcd_data_root`).
etcd_install_source = "debian"
# For "release": the version, and where its tarball is:
#   {etcd_release_url}/v{etcd_version}/etcd-v{etcd_version}-linux-{arch}.tar.gz
# An http(s) URL (GitHub below, or a mirror with the same layout) is downloaded by
# each host; a directory on the controller (an absolute path or file:///path, for
# air-gapped sites) is uploaded to each host.
etcd_version = "3.5.16"
etcd_release_url = "https://github.com/etcd-io/etcd/releases/download"
# Required for "release": the tarball's sha256 per architecture ({"amd64": "<64 hex>"}).
# Checked on the host before any binary is replaced.
etcd_sha256: dict[str, str] = {}
