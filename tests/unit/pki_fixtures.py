"""A real CA made with `cryptography` for the audit and status unit tests, plus
observations of a host where everything is as the plan says."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from etcd_pki.certs import CertOnHost, FileMeta
from etcd_pki.observation import ExpectedFile, FileStat, HostObservation, UnitState
from etcd_pki.plan import CertSpec, HostPlan

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
BOTH = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def public_pem(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Ca:
    """Root and intermediate, like step-ca's."""

    name: str = "test-ca"
    root_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    inter_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    # With a seed, the root and intermediate are the same bytes in every run (fixed keys,
    # serials and deterministic signatures): tests/operations compare them.
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.seed is not None:
            self.root_key = ec.derive_private_key(self.seed, ec.SECP256R1())
            self.inter_key = ec.derive_private_key(self.seed + 1, ec.SECP256R1())
        start = NOW - timedelta(days=365)
        self.root = self._ca_cert(f"{self.name} Root CA", self.root_key, self.root_key, None, start)
        self.inter = self._ca_cert(
            f"{self.name} Intermediate CA", self.inter_key, self.root_key, self.root, start
        )

    def _ca_cert(self, cn, key, signer, issuer, start):
        return (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(issuer.subject if issuer else _name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number() if self.seed is None else self.seed)
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(signer, hashes.SHA256(), ecdsa_deterministic=self.seed is not None)
        )

    @property
    def root_pem(self) -> str:
        return pem(self.root)

    @property
    def pem_inter(self) -> str:
        return pem(self.inter)

    def leaf(
        self,
        spec: CertSpec,
        key=None,
        *,
        used: float = 0.1,
        lifetime: timedelta = timedelta(hours=17520),
        subject: str | None = None,
        sans: tuple[str, ...] | None = None,
        ekus=None,
    ) -> tuple[str, object]:
        """(chain PEM, key) of a leaf for ``spec`` with ``used`` of its lifetime gone."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        if ekus is None:  # what the CA's leaf template gives this kind
            ekus = (ExtendedKeyUsageOID.CLIENT_AUTH,) if spec.kind == "client" else BOTH
        start = NOW - lifetime * used
        names = []
        for san in spec.sans if sans is None else sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(subject or spec.subject))
            .issuer_name(self.inter.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
            .sign(self.inter_key, hashes.SHA256())
        )
        return pem(cert) + pem(self.inter), key

    def crl(
        self,
        serials: tuple[int, ...] = (),
        *,
        number: int = 1,
        this_update: datetime | None = None,
        next_update: datetime | None = None,
        signer=None,
        issuer: x509.Name | None = None,
    ) -> bytes:
        """A DER CRL as step-ca makes it (signed by the intermediate unless ``signer``)."""
        this_update = this_update or datetime.now(UTC) - timedelta(minutes=1)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer or self.inter.subject)
            .last_update(this_update)
            .next_update(next_update or this_update + timedelta(hours=24))
            .add_extension(x509.CRLNumber(number), critical=False)
        )
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(this_update)
                .build()
            )
        crl = builder.sign(signer or self.inter_key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.DER)

    def server(self, ip: str = "127.0.0.1") -> tuple[str, str]:
        """(chain PEM, key PEM) of a TLS server certificate for ``ip``, as step-ca's own."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(ip))
            .issuer_name(self.inter.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.inter_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return pem(cert) + pem(self.inter), key_pem


def good_cert(ca: Ca, spec: CertSpec, **kwargs) -> CertOnHost:
    chain, key = ca.leaf(spec, **kwargs)
    blocks = [
        b + "-----END CERTIFICATE-----\n" for b in chain.split("-----END CERTIFICATE-----\n")[:-1]
    ]
    return CertOnHost(
        chain_pem=blocks,
        key_public_pem=public_pem(key),
        crt_meta=FileMeta("root", "644"),
        key_meta=FileMeta(spec.owner, "400"),
    )


def expected_ca_files(hp: HostPlan) -> list[ExpectedFile]:
    d = hp.settings.ca_dir
    return [
        ExpectedFile(f"{d}/secrets/root_ca_key", "root", "root", "400"),
        ExpectedFile(f"{d}/secrets/intermediate_ca_key", "step", "step", "400"),
        ExpectedFile(f"{d}/secrets", "root", "step", "750"),
    ]


def good_observation(ca: Ca, hp: HostPlan, **cert_kwargs) -> HostObservation:
    """What a host looks like right after a successful deploy."""
    s = hp.settings
    timers = {
        f"{c.unit}.timer": UnitState(
            f"{c.unit}.timer", True, "enabled", "active", NOW + timedelta(hours=15), None
        )
        for c in hp.certs
    }
    if hp.is_etcd:
        timers["etcd-pki-crl.timer"] = UnitState(
            "etcd-pki-crl.timer", True, "enabled", "active", NOW + timedelta(minutes=40), None
        )
        timers["etcd-pki-crl.service"] = UnitState(
            "etcd-pki-crl.service", True, "static", "inactive", result="success"
        )
    stats: dict[str, FileStat | None] = {
        f"{s.ssl_dir}/root_ca.crt": FileStat("root", "root", "644")
    }
    ca_service = None
    if hp.is_cert_manager:
        stats.update({f.path: FileStat(f.owner, f.group, f.mode) for f in expected_ca_files(hp)})
        ca_service = (
            UnitState("step-ca.service", True, "enabled", "active")
            if hp.is_active_ca
            else UnitState("step-ca.service", True, "disabled", "inactive")
        )
    keys = [c.key for c in hp.certs]
    if hp.is_cert_manager:
        keys += [f"{s.ca_dir}/secrets/root_ca_key", f"{s.ca_dir}/secrets/intermediate_ca_key"]
    return HostObservation(
        certs={c.name: good_cert(ca, c, **cert_kwargs) for c in hp.certs},
        timers=timers,
        root_pem=ca.root_pem,
        stats=stats,
        ca_service=ca_service,
        secret_files=(
            [f"{s.ca_dir}/secrets/root_ca_key", f"{s.ca_dir}/secrets/password"]
            if hp.is_cert_manager
            else []
        ),
        private_key_files=keys,
        crl=ca.crl() if hp.is_etcd else None,
    )
