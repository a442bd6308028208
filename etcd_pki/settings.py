"""Typed, validated view of the deploy's settings (group_data/all.py and overrides).

The settings spec: each setting is declared once, as a field of `Settings` below, with
its type, its default (the value group_data/all.py gives it), one line of documentation
(the settings table in README.md is made from it: `make settings-table`) and the check
of its value alone (etcd_pki/checks.py). Checks that need several settings are in
``_check_together``. tests/unit/test_settings_spec.py keeps group_data/all.py, this spec
and the table in step.

No pyinfra import: the deploy, the audit and the tests all build a ``Settings`` from a
plain mapping, so every rule about a setting lives here once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import PurePosixPath
from typing import Any

from . import checks as c
from .checks import AEAD_SUITES, Check, parse_duration
from .checks import is_dns_name as _is_dns_name  # noqa: F401 (plan.py imports it from here)
from .etcd_auth import problems as etcd_auth_problems
from .fields import url_problem
from .release import release_url_problem
from .s3 import target_problems

INSTALL_SOURCES = ("github", "mirror", "controller")
KEY_TYPES = ("EC", "RSA", "OKP")
RENEW_MODES = ("renew", "rekey")
ETCD_SOURCES = ("debian", "release")
TLS_VERSIONS = ("TLS1.2", "TLS1.3")
# Each belongs to one part of the deploy: none may be another or lie inside another.
DIRS = ("bin_dir", "ca_dir", "ssl_dir", "step_dir", "etcd_data_root", "metrics_dir")


class ConfigError(ValueError):
    """One or more invalid settings or inventory entries; the message lists them all."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def setting(default: Any, doc: str, check: Check | None = None, shown: str | None = None) -> Any:
    """A `Settings` field: its ``default`` as group_data/all.py has it, ``doc`` (one line
    of the settings table), the ``check`` of its value alone, and how the table shows the
    default when the value itself is too long (``shown``). Every field is required."""
    return field(metadata={"default": default, "doc": doc, "check": check, "shown": shown})


@dataclass(frozen=True)
class Settings:
    """Every setting from group_data/all.py, checked. Build with ``from_data``."""

    # Smallstep binaries
    step_version: str = setting("0.30.6", "pinned version of `step` (every host)", c.version)
    step_ca_version: str = setting(
        "0.30.2", "pinned version of `step-ca` (cert-managers)", c.version
    )
    step_sha256: dict[str, str] = setting(
        {},
        'optional pinned tarball sha256 per arch (`{"amd64": "<64 hex>"}`); without a pin '
        "the release's `checksums.txt` from the same source is used",
        c.sha256_pins,
    )
    step_ca_sha256: dict[str, str] = setting(
        {}, "the same for the `step-ca` tarball", c.sha256_pins
    )
    install_source: str = setting(
        "github",
        "`github` (official releases) or `mirror`: each host downloads with `curl` or `wget` "
        "(one of them must be installed) and keeps the tarball in `/var/cache/etcd-pki`; "
        "`controller`: uploaded from `install_controller_dir`. A plain-http mirror needs "
        "`step_sha256` (and `step_ca_sha256` for cert-managers) pinned",
        c.one_of(*INSTALL_SOURCES),
    )
    install_mirror_url: str | None = setting(
        None,
        "base URL with GitHub's layout: "
        "`{base}/cli/releases/download/v{V}/step_linux_{V}_{arch}.tar.gz`, "
        "`{base}/certificates/releases/download/v{V}/step-ca_linux_...`, each with "
        "`checksums.txt`",
    )
    install_controller_dir: str | None = setting(
        None,
        "a directory on the controller with the same layout (air-gapped sites); tarballs are "
        "uploaded",
    )
    bin_dir: str = setting("/opt/bin", "where `step` and `step-ca` go", c.directory)
    # The certificate authority (step-ca on the active cert-manager)
    active_cert_manager: str | None = setting(
        None,
        "the cert-manager that runs step-ca; `None` = the only host of `etcd_cert_managers`. "
        "Failover: set it to a standby and re-run the deploy",
    )
    ca_dir: str = setting(
        "/etc/step-ca", "step-ca's `$STEPPATH` (config, certs, secrets, db)", c.directory
    )
    ca_user: str = setting(
        "step",
        "system user step-ca runs as; owns the intermediate key (the root key stays root's)",
        c.user,
    )
    ca_name: str = setting(
        "etcd-default-ca", "name in the root and intermediate certificates", c.label
    )
    ca_root_lifetime: str = setting(
        "87600h", "lifetime of a root made by `rotate_ca.py` (10 years)", c.ca_lifetime
    )
    ca_intermediate_lifetime: str = setting(
        "43800h", "lifetime of an intermediate made by `rotate_ca.py` (5 years)", c.ca_lifetime
    )
    ca_port: int = setting(9000, "step-ca's port (all addresses)", c.port)
    ca_provisioner: str = setting(
        "etcd-provisioner", "JWK provisioner that signs the one-time tokens", c.unit_name
    )
    ca_extra_sans: list[str] = setting(
        [],
        "extra names/IPs for the CA's own TLS certificate (load balancers); its host's name, "
        "FQDN and address are always in it",
        c.sans,
    )
    step_dir: str = setting(
        "/etc/step",
        "`$STEPPATH` of the `step` CLI on every host (CA URL + fingerprint + root, as "
        "`step ca bootstrap` writes them)",
        c.directory,
    )
    install_root_in_trust_store: bool = setting(
        False,
        "also add the root to the system trust store (`update-ca-certificates`, file "
        "`/usr/local/share/ca-certificates/etcd-pki-root_ca.crt`); unset again, the next run "
        "removes it",
        c.boolean,
    )
    # Revocation (docs/revocation.md)
    crl_cache_duration: str = setting(
        "24h",
        "how long step-ca's CRL is valid (its nextUpdate), 1h or more; a new one comes at 2/3 "
        "of it and on every revocation",
        c.crl_duration,
    )
    crl_fetch_on_calendar: str = setting(
        "hourly",
        "when each etcd member fetches and checks the CRL (systemd `OnCalendar`)",
        c.calendar,
    )
    crl_fetch_randomized_delay: str = setting("5m", "random spread of those fetches", c.duration)
    # Monitoring (docs/metrics.md)
    metrics_dir: str = setting(
        "/var/lib/prometheus/node-exporter",
        "where every host writes `etcd_pki.prom` for node_exporter's textfile collector "
        "(`--collector.textfile.directory`; Debian's default); made if missing "
        "([docs/metrics.md](docs/metrics.md))",
        c.directory,
    )
    # CA redundancy: backups (docs/operations.md)
    backup_recipients: list[str] = setting(
        [],
        "age public keys (`age1...`, from `age-keygen -y KEYFILE`) that `backup.py` encrypts "
        "to; empty = backups refused",
        c.age_recipients,
    )
    backup_dir: str = setting(
        "backups",
        "controller directory for the encrypted backups (relative to the repo)",
        c.controller_dir,
    )
    backup_s3_endpoint: str = setting(
        "",
        "S3-compatible storage (`https://host[:port]`) that each backup is also uploaded to; "
        "empty = no upload",
    )
    backup_s3_bucket: str = setting("", "bucket of the upload (must exist)")
    backup_s3_prefix: str = setting(
        "etcd-pki/", 'key prefix ("folder/" names) of the uploaded backups, or `""`'
    )
    backup_s3_region: str = setting("us-east-1", "region used in the request signature")
    backup_s3_ca_file: str = setting(
        "",
        "PEM bundle on the controller to verify the endpoint's TLS certificate; empty = "
        "system trust",
        c.controller_file,
    )
    backup_s3_allow_http: bool = setting(
        False, "accept a plain `http://` endpoint (a test server); refused otherwise", c.boolean
    )
    backup_mac_key_file: str = setting(
        "",
        "a secret key file on the controller (32+ random bytes, mode 0600): backups get an "
        "HMAC (`FILE.mac`) and restore.py refuses one without a valid MAC; empty = not "
        "authenticated",
        c.controller_file,
    )
    # Leaf certificates
    ssl_dir: str = setting(
        "/etc/etcd/ssl", "certificates, keys, `root_ca.crt` and the CRL", c.directory
    )
    dns_domain: str = setting("local", "FQDN SAN = `NAME.dns_domain`; empty for none", c.domain)
    cert_lifetime: str = setting(
        "17520h", "lifetime of every certificate (2 years; Go durations: h, m, s)", c.lifetime
    )
    cert_lifetime_max: str = setting(
        "26280h",
        "the CA's longest lifetime (3 years); it refuses others. min <= lifetime <= max",
        c.lifetime,
    )
    cert_lifetime_min: str = setting("1h", "the CA's shortest lifetime", c.lifetime)
    key_type: str = setting(
        "EC", "`EC` (P-256), `RSA` (2048) or `OKP` (Ed25519)", c.one_of(*KEY_TYPES)
    )
    client_key_owner: str = setting(
        "root",
        "owner of the client key on client-only hosts (etcd hosts' keys belong to `etcd_user`)",
        c.user,
    )
    extra_sans: list[str] = setting([], "per host: extra SANs for all of its certificates", c.sans)
    # Renewal (a systemd service + timer per certificate)
    renew_threshold_percent: int = setting(
        66, "renew once this share of the lifetime has passed (1..99)", c.percent
    )
    renew_mode: str = setting(
        "renew",
        "`renew` keeps the key; `rekey` makes a new key each time",
        c.one_of(*RENEW_MODES),
    )
    renew_on_calendar: str = setting(
        "*-*-* 03:00:00", "when the timers fire (systemd `OnCalendar`)", c.calendar
    )
    renew_randomized_delay: str = setting("1h", "random spread of the timers", c.duration)
    renew_persistent: bool = setting(True, "run a missed renewal at next boot", c.boolean)
    renew_post_command: str | None = setting(
        None,
        "a command run after a renewal (for example reload an application on a client "
        "host); etcd needs none",
        c.shell_line,
    )
    # etcd
    etcd_user: str = setting("etcd", "user etcd runs as; owns the etcd hosts' keys", c.user)
    etcd_service_name: str = setting(
        "etcd",
        "systemd unit name (the seed used `etcd-k8s-X`); the deploy writes its own unit",
        c.unit_name,
    )
    etcd_cluster_name: str = setting(
        "etcd-cluster", "initial-cluster token and data directory name", c.unit_name
    )
    etcd_data_root: str = setting(
        "/var/lib/etcd",
        "data lives in `<root>/<cluster name>`; another cluster's data is never reused",
        c.directory,
    )
    etcd_client_port: int = setting(2379, "etcd's client port", c.port)
    etcd_peer_port: int = setting(2380, "etcd's peer port", c.port)
    etcd_tls_min_version: str = setting(
        "TLS1.2",
        "oldest TLS version etcd accepts on both ports (`TLS1.2` or `TLS1.3`)",
        c.one_of(*TLS_VERSIONS, unknown=False),
    )
    etcd_cipher_suites: list[str] = setting(
        list(AEAD_SUITES),
        "TLS 1.2 suites etcd accepts, Go's names (forward secret AEAD only)",
        c.cipher_suites,
        shown="the six ECDHE AES-GCM / ChaCha20-Poly1305 suites",
    )
    etcd_auth: dict = setting(
        {"enabled": False, "roles": {}, "users": {}},
        "etcd access control by certificate common name: `enabled`, `roles` (role -> "
        "{key prefix: `read`/`write`/`readwrite`}), `users` (common name -> roles); members' "
        "client certificates are root ([docs/etcd-auth.md](docs/etcd-auth.md))",
        etcd_auth_problems,
        shown="off",
    )
    etcd_install_source: str = setting(
        "debian",
        "`debian` (packages `etcd-server`/`etcd-client`) or `release` (official tarball)",
        c.one_of(*ETCD_SOURCES),
    )
    etcd_version: str = setting("3.5.16", "etcd release to install with `release`")
    etcd_release_url: str = setting(
        "https://github.com/etcd-io/etcd/releases/download",
        "http(s) base URL, or a controller directory, with the official layout",
    )
    etcd_sha256: dict[str, str] = setting(
        {}, "sha256 of the release tarball per arch (required for `release`)", c.sha256_pins
    )
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "data") -> Settings:
        """Check ``data`` and build Settings; raise ConfigError naming each bad field."""
        names = [s.name for s in SPEC]
        problems = [
            f"{where}: setting `{n}` is missing (is group_data/all.py loaded?)"
            for n in names
            if n not in data
        ]
        if problems:
            raise ConfigError(problems)
        values = {n: data[n] for n in names}
        problems = [f"{where}: {p}" for p in _check(values)]
        if problems:
            raise ConfigError(problems)
        return cls(**values)

    @property
    def lifetime_seconds(self) -> float:
        return parse_duration(self.cert_lifetime)

    @property
    def trusted_root(self) -> str:
        """The CA's root certificate as every host holds it (public)."""
        return f"{self.ssl_dir}/root_ca.crt"

    @property
    def ca_json(self) -> str:
        """step-ca's configuration on a cert-manager."""
        return f"{self.ca_dir}/config/ca.json"

    @property
    def crl_file(self) -> str:
        """The CRL etcd checks every new connection against (DER)."""
        return f"{self.ssl_dir}/crl.der"

    @property
    def ledger(self) -> str:
        """The CA's ledger of issued and revoked certificates (public data)."""
        return f"{self.ca_dir}/ledger.tsv"

    @property
    def ca_intermediate(self) -> str:
        """The intermediate certificate that signs leaves and the CRL (public)."""
        return f"{self.ca_dir}/certs/intermediate_ca.crt"

    @property
    def ca_root(self) -> str:
        """The root certificate in a cert-manager's CA directory (public)."""
        return f"{self.ca_dir}/certs/root_ca.crt"


@dataclass(frozen=True)
class Setting:
    """One entry of the settings spec, read from a `Settings` field."""

    name: str
    type: str  # the annotation, as written
    default: Any
    doc: str
    check: Check | None
    shown: str | None  # the default as the settings table shows it, when not the value


SPEC: tuple[Setting, ...] = tuple(
    Setting(f.name, str(f.type), **f.metadata) for f in fields(Settings) if f.name != "extra"
)


def _check(v: dict[str, Any]) -> list[str]:
    """Problems with the settings in ``v``, each naming its field: first each setting's
    own check, in the spec's order, then those that need several settings."""
    out = [p for s in SPEC if s.check for p in s.check(s.name, v[s.name])]
    return out + _check_together(v)


def _check_together(v: dict[str, Any]) -> list[str]:
    """Problems that need more than one setting to see."""
    out: list[str] = []
    source = v["install_source"]
    if source == "mirror":
        url = v["install_mirror_url"]
        problem = url_problem(url)
        if problem:
            out.append(f"`install_mirror_url` = {url!r} {problem}")
    if source == "controller":
        path = v["install_controller_dir"]
        if not path:
            out.append("`install_controller_dir` must name a directory on the controller")

    out.extend(_overlaps({name: str(v[name]) for name in DIRS}))
    if len({v["ca_port"], v["etcd_client_port"], v["etcd_peer_port"]}) < 3:
        out.append("`ca_port`, `etcd_client_port` and `etcd_peer_port` must all differ")
    if v["etcd_install_source"] == "release":
        if not re.fullmatch(r"\d+\.\d+\.\d+", str(v["etcd_version"])):
            out.append(f"`etcd_version` = {v['etcd_version']!r} is not a version like 3.5.16")
        elif tuple(int(x) for x in str(v["etcd_version"]).split(".")[:2]) < (3, 5):
            out.append(
                f"`etcd_version` = {v['etcd_version']!r}: the deploy supports etcd 3.5, 3.6 "
                "and 3.7 (older ones are end of life)"
            )
        problem = release_url_problem(v["etcd_release_url"])
        if problem:
            out.append(f"`etcd_release_url` = {v['etcd_release_url']!r}: {problem}")
        if not v["etcd_sha256"]:
            out.append("`etcd_sha256` must pin the tarball's sha256 per arch for source 'release'")

    try:
        if parse_duration(v["ca_intermediate_lifetime"]) > parse_duration(v["ca_root_lifetime"]):
            out.append(
                "`ca_intermediate_lifetime` must not be longer than `ca_root_lifetime` "
                "(an intermediate cannot outlive the root that signs it)"
            )
    except ValueError:
        pass  # reported by their own checks
    lifetimes = ("cert_lifetime_min", "cert_lifetime", "cert_lifetime_max")
    try:
        low, mid, high = (parse_duration(v[name]) for name in lifetimes)
    except ValueError:
        pass  # each unparsable one is reported by its own check
    else:
        if not low <= mid <= high:
            out.append(
                "lifetimes must satisfy cert_lifetime_min <= cert_lifetime <= cert_lifetime_max, "
                f"got {v['cert_lifetime_min']} / {v['cert_lifetime']} / {v['cert_lifetime_max']}"
            )

    out.extend(
        target_problems(
            v["backup_s3_endpoint"],
            v["backup_s3_bucket"],
            v["backup_s3_prefix"],
            v["backup_s3_region"],
            v["backup_s3_allow_http"] is True,
        )
    )
    return out


def _overlaps(paths: dict[str, str]) -> list[str]:
    """Each directory is owned by one part of the deploy (a former cert-manager's
    `ca_dir` is moved aside, for one): none may be another or lie inside another."""
    out = []
    items = [(name, PurePosixPath(path)) for name, path in paths.items()]
    for i, (name, path) in enumerate(items):
        for other, other_path in items[i + 1 :]:
            if path == other_path:
                out.append(f"`{name}` and `{other}` are the same directory ({path})")
            elif path.is_relative_to(other_path) or other_path.is_relative_to(path):
                inner, outer = (name, other) if path.is_relative_to(other_path) else (other, name)
                out.append(f"`{inner}` must not lie inside `{outer}` ({paths[inner]})")
    return out
