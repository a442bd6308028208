"""The cluster plan: which host holds which role and which certificates, with which SANs.

Decided once, from the inventory and the settings, with no pyinfra import: the deploy,
the audit and the tests all read the same plan. ``build_plan`` validates everything it
reads and raises one ``ConfigError`` listing every problem, naming host and field.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .fields import plain_ip
from .settings import ConfigError, Settings, _is_dns_name

ETCD = "etcd"
CLIENTS = "etcd_clients"
CERT_MANAGERS = "etcd_cert_managers"
KNOWN_GROUPS = (ETCD, CLIENTS, CERT_MANAGERS)

# Settings that must be the same on every host: they describe the one CA and cluster.
CLUSTER_WIDE = (
    "active_cert_manager",
    "ca_dir",
    "ca_name",
    "ca_port",
    "ca_root_lifetime",
    "ca_intermediate_lifetime",
    "ca_provisioner",
    "cert_lifetime",
    "cert_lifetime_max",
    "cert_lifetime_min",
    "crl_cache_duration",
    "dns_domain",
    "etcd_cluster_name",
    "etcd_client_port",
    "etcd_peer_port",
    "etcd_tls_min_version",
    "etcd_cipher_suites",
    "etcd_auth",
    "ssl_dir",
    "step_version",
    "step_ca_version",
)


@dataclass(frozen=True)
class HostInput:
    """What the inventory says about one host."""

    name: str  # plain node name (etcd-k8s-1), also for @docker/... hosts
    groups: frozenset[str]
    data: Mapping[str, Any]


@dataclass(frozen=True)
class CertSpec:
    """One leaf certificate and key on one host."""

    host: str
    kind: str  # "peer" | "server" | "client"
    subject: str
    dns_names: tuple[str, ...]
    ips: tuple[str, ...]
    owner: str
    ssl_dir: str

    @property
    def name(self) -> str:
        return f"{self.host}-{self.kind}"

    @property
    def crt(self) -> str:
        return f"{self.ssl_dir}/{self.name}.crt"

    @property
    def key(self) -> str:
        return f"{self.ssl_dir}/{self.name}.key"

    @property
    def sans(self) -> tuple[str, ...]:
        return self.dns_names + self.ips

    @property
    def unit(self) -> str:
        """Base name of this certificate's renewal service and timer."""
        return f"step-renew-{self.name}"


@dataclass(frozen=True)
class HostPlan:
    name: str
    address: str
    groups: frozenset[str]
    settings: Settings
    certs: tuple[CertSpec, ...]
    is_active_ca: bool

    @property
    def is_etcd(self) -> bool:
        return ETCD in self.groups

    @property
    def is_cert_manager(self) -> bool:
        return CERT_MANAGERS in self.groups

    @property
    def peer_url(self) -> str:
        return f"https://{_url_host(self.address)}:{self.settings.etcd_peer_port}"

    @property
    def client_url(self) -> str:
        return f"https://{_url_host(self.address)}:{self.settings.etcd_client_port}"

    @property
    def etcd_data_dir(self) -> str:
        return f"{self.settings.etcd_data_root}/{self.settings.etcd_cluster_name}"

    def cert(self, kind: str) -> CertSpec:
        return next(c for c in self.certs if c.kind == kind)


@dataclass(frozen=True)
class ClusterPlan:
    hosts: dict[str, HostPlan]
    active_ca: str
    ca_sans: tuple[str, ...]

    @property
    def ca(self) -> HostPlan:
        return self.hosts[self.active_ca]

    @property
    def ca_url(self) -> str:
        """URL every host uses for the CA: the active cert-manager's address."""
        return f"https://{_url_host(self.ca.address)}:{self.ca.settings.ca_port}"

    @property
    def standbys(self) -> tuple[str, ...]:
        return tuple(n for n, h in self.hosts.items() if h.is_cert_manager and not h.is_active_ca)

    @property
    def etcd_members(self) -> tuple[HostPlan, ...]:
        return tuple(h for h in self.hosts.values() if h.is_etcd)

    @property
    def initial_cluster(self) -> str:
        """etcd's --initial-cluster for a new cluster of every `etcd` host."""
        return ",".join(f"{h.name}={h.peer_url}" for h in self.etcd_members)

    @property
    def client_endpoints(self) -> str:
        return ",".join(h.client_url for h in self.etcd_members)


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def split_sans(names: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split SANs into (DNS names, IPs), each de-duplicated in first-seen order."""
    dns: dict[str, None] = {}
    ips: dict[str, None] = {}
    for name in names:
        ip = plain_ip(name)
        if ip:
            ips[ip] = None
        else:
            dns[name.lower()] = None
    return tuple(dns), tuple(ips)


def _bad_sans(values: Any, field: str, where: str) -> list[str]:
    if not isinstance(values, list | tuple):
        return [f"{where}: `{field}` must be a list"]
    problems = []
    for value in values:
        if plain_ip(value) is None and not _is_dns_name(str(value)):
            problems.append(
                f"{where}: `{field}` entry {value!r} is neither a plain IP address nor a DNS name"
            )
    return problems


def _unpinned_http(s: Settings, cert_manager: bool, where: str) -> list[str]:
    """A plain-http mirror authenticates nothing, its checksums.txt included: what the
    host downloads from it must be pinned."""
    url = s.install_mirror_url or ""
    if s.install_source != "mirror" or not url.lower().startswith("http://"):
        return []
    missing = ["step_sha256"] if not s.step_sha256 else []
    if cert_manager and not s.step_ca_sha256:
        missing.append("step_ca_sha256")
    if not missing:
        return []
    return [
        f"{where}: `install_mirror_url` is plain http ({url}): pin "
        + " and ".join(f"`{m}`" for m in missing)
        + " (checksums from the same unauthenticated server prove nothing), or use https"
    ]


def _address(host: HostInput) -> str | None:
    """The host's IP for SANs and URLs: `address` data, else an IP ssh_hostname/name."""
    for candidate in (host.data.get("address"), host.data.get("ssh_hostname"), host.name):
        if candidate is None:
            continue
        ip = plain_ip(candidate)  # no IPv6 zone (`%eth0`): not for a certificate or URL
        if ip:
            return ip
        if candidate is host.data.get("address"):
            return None  # an explicit but invalid address is an error, not a fallback
    return None


def _group_typos(hosts: list[HostInput]) -> list[str]:
    problems = []
    seen = sorted({g for h in hosts for g in h.groups} - set(KNOWN_GROUPS) - {"all"})
    for group in seen:
        normal = group.replace("-", "_").lower()
        close = difflib.get_close_matches(normal, KNOWN_GROUPS, n=1, cutoff=0.75)
        if normal in KNOWN_GROUPS or close:
            meant = close[0] if close else normal
            problems.append(f"inventory: group `{group}` looks like a typo for `{meant}`")
    return problems


def _active_cert_manager(hosts: list[HostInput], settings: dict[str, Settings]) -> str:
    """Name of the active cert-manager; ConfigError when there is not exactly one."""
    named = {s.active_cert_manager for s in settings.values() if s.active_cert_manager}
    managers = [h.name for h in hosts if CERT_MANAGERS in h.groups]
    if len(named) > 1:
        raise ConfigError(
            [f"`active_cert_manager`: two active cert-managers named: {', '.join(sorted(named))}"]
        )
    if named:
        active = named.pop()
        if active not in managers:
            raise ConfigError(
                [
                    f"`active_cert_manager` = {active!r} is not in group `{CERT_MANAGERS}` "
                    f"(members: {', '.join(managers) or 'none'})"
                ]
            )
        return active
    if not managers:
        raise ConfigError(
            [f"inventory: no cert-manager; put one `{ETCD}` host in group `{CERT_MANAGERS}`"]
        )
    if len(managers) > 1:
        raise ConfigError(
            [
                f"inventory: several cert-managers ({', '.join(managers)}); set "
                "`active_cert_manager` to the one that runs step-ca (the others are standbys)"
            ]
        )
    return managers[0]


def build_plan(hosts: Iterable[HostInput]) -> ClusterPlan:
    """Validate the inventory and compute every host's role and certificates."""
    hosts = list(hosts)
    problems: list[str] = []
    settings: dict[str, Settings] = {}
    for host in hosts:
        try:
            settings[host.name] = Settings.from_data(host.data, where=f"host {host.name}")
        except ConfigError as e:
            problems.extend(e.problems)
    problems.extend(_group_typos(hosts))
    if problems:
        raise ConfigError(problems)

    for key in CLUSTER_WIDE:
        values = {repr(getattr(s, key)) for s in settings.values()}
        if len(values) > 1:
            problems.append(
                f"`{key}` differs between hosts ({', '.join(sorted(values))}); "
                "it describes the one CA and cluster, set it in group_data/all.py"
            )

    names: dict[str, int] = {}
    addresses: dict[str, str] = {}
    for host in hosts:
        where = f"host {host.name}"
        names[host.name] = names.get(host.name, 0) + 1
        if not _is_dns_name(host.name) or "." in host.name:
            problems.append(f"{where}: the name is not a valid host name (letters, digits, '-')")
        if ETCD in host.groups and host.name.endswith(("-client", "-server")):
            problems.append(
                f"{where}: an etcd host's name may not end in -client or -server (its peer "
                "certificate is named after it, and those endings mark the other kinds)"
            )
        if CERT_MANAGERS in host.groups and ETCD not in host.groups:
            problems.append(f"{where}: is in `{CERT_MANAGERS}` but not in `{ETCD}`")
        if not host.groups & {ETCD, CLIENTS}:
            continue
        address = _address(host)
        if address is None:
            problems.append(
                f"{where}: no usable IP address for its certificates; set host data "
                f"`address` (got address={host.data.get('address')!r}, "
                f"ssh_hostname={host.data.get('ssh_hostname')!r})"
            )
        elif address in addresses:
            problems.append(f"{where}: address {address} is also used by {addresses[address]}")
        else:
            addresses[address] = host.name
        problems.extend(_bad_sans(host.data.get("extra_sans", []), "extra_sans", where))
        problems.extend(_unpinned_http(settings[host.name], CERT_MANAGERS in host.groups, where))
        s = settings[host.name]
        if ETCD in host.groups and CLIENTS in host.groups and s.client_key_owner != s.etcd_user:
            problems.append(
                f"{where}: is in `{ETCD}` and `{CLIENTS}`; its client key cannot belong to both "
                f"etcd_user={s.etcd_user!r} and client_key_owner={s.client_key_owner!r} "
                f"(drop it from `{CLIENTS}`: etcd hosts get a client certificate anyway)"
            )
    problems.extend(f"inventory: host {n} is listed {c} times" for n, c in names.items() if c > 1)
    if not any(ETCD in h.groups for h in hosts):
        problems.append(f"inventory: group `{ETCD}` is empty; it needs at least one host")
    try:
        active = _active_cert_manager(hosts, settings)
    except ConfigError as e:
        problems.extend(e.problems)
        active = None
    if problems:
        raise ConfigError(problems)

    plans = {h.name: _host_plan(h, addresses, settings[h.name], h.name == active) for h in hosts}
    ca = plans[active]
    ca_problems = _bad_sans(ca.settings.ca_extra_sans, "ca_extra_sans", f"host {active}")
    ca_problems += _access_problems(ca.settings.etcd_auth, plans)
    if ca_problems:
        raise ConfigError(ca_problems)
    dns, ips = split_sans(
        [ca.name, *_fqdn(ca.name, ca.settings), ca.address, "localhost", "127.0.0.1"]
        + list(ca.settings.ca_extra_sans)
    )
    return ClusterPlan(hosts=plans, active_ca=active, ca_sans=dns + ips)


def _access_problems(config: dict, plans: dict[str, HostPlan]) -> list[str]:
    """`etcd_auth` against the inventory: a user must not be a member's own client
    certificate (those are root already), and no host may be named "root" (its peer
    certificate would then be etcd's root user)."""
    if not config.get("enabled"):
        return []
    out = []
    admins = {h.cert("client").subject: h.name for h in plans.values() if h.is_etcd}
    for user in config.get("users", {}):
        if user in admins:
            out.append(
                f"`etcd_auth['users'][{user!r}]`: the client certificate of etcd member "
                f"{admins[user]} has the root role already; list client hosts' names here"
            )
    if "root" in plans:
        out.append("host root: with `etcd_auth` on, no host may be named root (etcd's root user)")
    return out


def _fqdn(name: str, settings: Settings) -> list[str]:
    return [f"{name}.{settings.dns_domain}"] if settings.dns_domain else []


def _host_plan(
    host: HostInput, addresses: dict[str, str], settings: Settings, active: bool
) -> HostPlan:
    address = next((a for a, n in addresses.items() if n == host.name), "")
    base = [host.name, *_fqdn(host.name, settings), address, *host.data.get("extra_sans", [])]
    kinds: list[tuple[str, str, list[str]]] = []
    if ETCD in host.groups:
        kinds = [
            ("peer", host.name, base),
            ("server", f"{host.name}-server", base + ["localhost", "127.0.0.1"]),
            ("client", f"{host.name}-client", base),
        ]
        owner = settings.etcd_user
    elif CLIENTS in host.groups:
        kinds = [("client", f"{host.name}-client", base)]
        owner = settings.client_key_owner
    certs = []
    for kind, subject, sans in kinds:
        dns, ips = split_sans(sans)
        certs.append(
            CertSpec(
                host=host.name,
                kind=kind,
                subject=subject,
                dns_names=dns,
                ips=ips,
                owner=owner,
                ssl_dir=settings.ssl_dir,
            )
        )
    return HostPlan(
        name=host.name,
        address=address,
        groups=host.groups,
        settings=settings,
        certs=tuple(certs),
        is_active_ca=active,
    )
