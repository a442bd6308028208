"""Typed, validated view of the deploy's settings (group_data/all.py and overrides).

No pyinfra import: the deploy, the audit and the tests all build a ``Settings`` from a
plain mapping, so every rule about a setting lives here once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from .fields import LABEL_RE, NAME_RE, url_problem
from .redundancy import recipient_problems
from .release import release_url_problem
from .s3 import target_problems

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Paths end up in unit files and shell commands: keep them boring.
_SAFE_PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]+$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

INSTALL_SOURCES = ("github", "mirror", "controller")
KEY_TYPES = ("EC", "RSA", "OKP")
RENEW_MODES = ("renew", "rekey")
ETCD_SOURCES = ("debian", "release")
TLS_VERSIONS = ("TLS1.2", "TLS1.3")
# The TLS 1.2 suites etcd (Go) knows that are forward secret and AEAD.
AEAD_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
)


class ConfigError(ValueError):
    """One or more invalid settings or inventory entries; the message lists them all."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def parse_duration(text: str) -> float:
    """Seconds in a Go duration such as ``17520h`` or ``1h30m``.

    >>> parse_duration("1h0m0s")
    3600.0
    """
    text = str(text).strip()
    pos, total = 0, 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{text!r} is not a duration like 17520h, 90m or 1h30m")
    return total


@dataclass(frozen=True)
class Settings:
    """Every setting from group_data/all.py, checked. Build with ``from_data``."""

    step_version: str
    step_ca_version: str
    step_sha256: dict[str, str]
    step_ca_sha256: dict[str, str]
    install_source: str
    install_mirror_url: str | None
    install_controller_dir: str | None
    bin_dir: str
    active_cert_manager: str | None
    ca_dir: str
    ca_user: str
    ca_name: str
    ca_port: int
    ca_provisioner: str
    ca_extra_sans: list[str]
    step_dir: str
    install_root_in_trust_store: bool
    crl_cache_duration: str
    crl_fetch_on_calendar: str
    crl_fetch_randomized_delay: str
    ssl_dir: str
    dns_domain: str
    cert_lifetime: str
    cert_lifetime_max: str
    cert_lifetime_min: str
    key_type: str
    client_key_owner: str
    extra_sans: list[str]
    renew_threshold_percent: int
    renew_mode: str
    renew_on_calendar: str
    renew_randomized_delay: str
    renew_persistent: bool
    renew_post_command: str | None
    etcd_user: str
    etcd_service_name: str
    etcd_cluster_name: str
    etcd_data_root: str
    etcd_client_port: int
    etcd_peer_port: int
    etcd_tls_min_version: str
    etcd_cipher_suites: list[str]
    etcd_install_source: str
    etcd_version: str
    etcd_release_url: str
    etcd_sha256: dict[str, str]
    backup_recipients: list[str]
    backup_dir: str
    backup_s3_endpoint: str
    backup_s3_bucket: str
    backup_s3_prefix: str
    backup_s3_region: str
    backup_s3_ca_file: str
    backup_mac_key_file: str
    backup_s3_allow_http: bool
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "data") -> Settings:
        """Check ``data`` and build Settings; raise ConfigError naming each bad field."""
        names = [f for f in cls.__dataclass_fields__ if f != "extra"]
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


def _check(v: dict[str, Any]) -> list[str]:
    """Problems with the settings in ``v``, each naming its field."""
    out: list[str] = []

    for name in ("step_version", "step_ca_version"):
        if not re.fullmatch(r"\d+\.\d+\.\d+", str(v[name])):
            out.append(f"`{name}` = {v[name]!r} is not a version like 0.30.2")
    for name in ("step_sha256", "step_ca_sha256", "etcd_sha256"):
        pins = v[name]
        if not isinstance(pins, dict):
            out.append(f"`{name}` must be a dict of arch -> sha256, got {type(pins).__name__}")
            continue
        for arch, digest in pins.items():
            if not _SHA256_RE.match(str(digest)):
                out.append(
                    f"`{name}[{arch!r}]` is not a sha256 (64 lowercase hex characters): "
                    f"{len(str(digest))} characters"
                )

    source = v["install_source"]
    if source not in INSTALL_SOURCES:
        out.append(f"`install_source` = {source!r} is unknown; use one of {INSTALL_SOURCES}")
    if source == "mirror":
        url = v["install_mirror_url"]
        problem = url_problem(url)
        if problem:
            out.append(f"`install_mirror_url` = {url!r} {problem}")
    if source == "controller":
        path = v["install_controller_dir"]
        if not path:
            out.append("`install_controller_dir` must name a directory on the controller")

    dirs = ("bin_dir", "ca_dir", "ssl_dir", "step_dir", "etcd_data_root")
    for name in dirs:
        out.extend(_check_path(name, v[name]))
    out.extend(_overlaps({name: str(v[name]) for name in dirs}))
    for name in ("ca_user", "client_key_owner", "etcd_user"):
        if not _USER_RE.match(str(v[name])):
            out.append(f"`{name}` = {v[name]!r} is not a valid user name")

    for name in ("ca_port", "etcd_client_port", "etcd_peer_port"):
        port = v[name]
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            out.append(f"`{name}` = {port!r} must be an integer 1..65535")
    if len({v["ca_port"], v["etcd_client_port"], v["etcd_peer_port"]}) < 3:
        out.append("`ca_port`, `etcd_client_port` and `etcd_peer_port` must all differ")
    if v["etcd_install_source"] not in ETCD_SOURCES:
        out.append(
            f"`etcd_install_source` = {v['etcd_install_source']!r} is unknown; "
            f"use one of {ETCD_SOURCES}"
        )
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
    if not LABEL_RE.match(str(v["ca_name"])):
        out.append(f"`ca_name` = {v['ca_name']!r}: use letters, digits, space, '.', '_', '-'")
    for name in ("ca_provisioner", "etcd_cluster_name", "etcd_service_name"):
        if not NAME_RE.match(str(v[name])):
            out.append(f"`{name}` = {v[name]!r}: use letters, digits, '.', '_', '-' (no space)")
    seconds = {}
    for name in ("cert_lifetime", "cert_lifetime_max", "cert_lifetime_min"):
        try:
            seconds[name] = parse_duration(v[name])
        except ValueError as e:
            out.append(f"`{name}`: {e}")
            continue
        if seconds[name] <= 0:
            out.append(f"`{name}` = {v[name]!r} must be longer than zero")
    if len(seconds) == 3 and not (
        seconds["cert_lifetime_min"] <= seconds["cert_lifetime"] <= seconds["cert_lifetime_max"]
    ):
        out.append(
            "lifetimes must satisfy cert_lifetime_min <= cert_lifetime <= cert_lifetime_max, "
            f"got {v['cert_lifetime_min']} / {v['cert_lifetime']} / {v['cert_lifetime_max']}"
        )

    if v["etcd_tls_min_version"] not in TLS_VERSIONS:
        out.append(
            f"`etcd_tls_min_version` = {v['etcd_tls_min_version']!r}: use one of {TLS_VERSIONS}"
        )
    suites = v["etcd_cipher_suites"]
    if not isinstance(suites, list | tuple) or not suites:
        out.append("`etcd_cipher_suites` must be a non-empty list of cipher suite names")
    else:
        for suite in suites:
            if suite not in AEAD_SUITES:
                out.append(
                    f"`etcd_cipher_suites` entry {suite!r} is not a forward secret AEAD suite "
                    f"etcd knows; use some of {', '.join(AEAD_SUITES)}"
                )
    if v["key_type"] not in KEY_TYPES:
        out.append(f"`key_type` = {v['key_type']!r} is unknown; use one of {KEY_TYPES}")
    threshold = v["renew_threshold_percent"]
    if not isinstance(threshold, int) or isinstance(threshold, bool) or not 1 <= threshold <= 99:
        out.append(f"`renew_threshold_percent` = {threshold!r} must be an integer 1..99")
    if v["renew_mode"] not in RENEW_MODES:
        out.append(f"`renew_mode` = {v['renew_mode']!r} is unknown; use one of {RENEW_MODES}")
    for name in ("renew_randomized_delay", "crl_fetch_randomized_delay"):
        try:
            parse_duration(v[name])
        except ValueError as e:
            out.append(f"`{name}`: {e}")
    for name in ("renew_on_calendar", "crl_fetch_on_calendar"):
        if not re.fullmatch(r"[0-9A-Za-z*:,./~ -]+", str(v[name])):
            out.append(f"`{name}` = {v[name]!r} is not an OnCalendar spec")
    try:
        if parse_duration(v["crl_cache_duration"]) < 3600:
            out.append(f"`crl_cache_duration` = {v['crl_cache_duration']!r} must be 1h or more")
    except ValueError as e:
        out.append(f"`crl_cache_duration`: {e}")
    post = v["renew_post_command"]
    if post is not None and (
        not isinstance(post, str)
        or not post.strip()
        or any(ord(c) < 32 or ord(c) == 127 for c in post)
    ):
        out.append(
            "`renew_post_command` must be one line of shell without control characters, or None"
        )
    for name in ("install_root_in_trust_store", "renew_persistent", "backup_s3_allow_http"):
        if not isinstance(v[name], bool):
            out.append(f"`{name}` must be True or False, got {v[name]!r}")
    for name in ("ca_extra_sans", "extra_sans"):
        if not isinstance(v[name], list | tuple):
            out.append(f"`{name}` must be a list of DNS names / IPs")
    if v["dns_domain"] and not _is_dns_name(str(v["dns_domain"])):
        out.append(f"`dns_domain` = {v['dns_domain']!r} is not a valid DNS name")
    out.extend(recipient_problems(v["backup_recipients"]))
    if not isinstance(v["backup_dir"], str) or not v["backup_dir"].strip():
        out.append("`backup_dir` must name a directory on the controller")
    out.extend(
        target_problems(
            v["backup_s3_endpoint"],
            v["backup_s3_bucket"],
            v["backup_s3_prefix"],
            v["backup_s3_region"],
            v["backup_s3_allow_http"] is True,
        )
    )
    if not isinstance(v["backup_s3_ca_file"], str):
        out.append("`backup_s3_ca_file` must be a path on the controller, or ''")
    if not isinstance(v["backup_mac_key_file"], str):
        out.append("`backup_mac_key_file` must be a path on the controller, or ''")
    return out


def _check_path(name: str, value: Any) -> list[str]:
    text = str(value)
    parts = PurePosixPath(text).parts
    if not _SAFE_PATH_RE.match(text) or ".." in parts or "." in text.split("/"):
        return [f"`{name}` = {value!r} must be an absolute path of [A-Za-z0-9._-] without '..'"]
    if len(parts) < 3:
        # "/", "/etc", "/opt": the deploy owns and fills this directory.
        return [f"`{name}` = {value!r} is too close to / to be owned by this deploy"]
    return []


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


def _is_dns_name(name: str) -> bool:
    """RFC 1123 host name (no wildcard): labels of letters, digits and inner hyphens."""
    if len(name) > 253 or not name:
        return False
    label = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
    labels = name.rstrip(".").split(".")
    return all(label.match(part) for part in labels) and not labels[-1].isdigit()
