"""Decide, from what a host holds, whether a certificate must be (re)issued.

Parsing is done with ``cryptography`` on PEM text read from the host; nothing here
looks at openssl's human-readable output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .plan import CertSpec

_PEM_RE = re.compile(r"-----BEGIN ([A-Z ]+)-----\r?\n.*?-----END \1-----", re.S)
CRT_MODE = "644"
# The extended key usages each kind of certificate carries, no more: a client
# certificate cannot serve (the CA's leaf template, templates/step-leaf.tpl).
EKUS = {
    "peer": frozenset({"serverAuth", "clientAuth"}),
    "server": frozenset({"serverAuth", "clientAuth"}),
    "client": frozenset({"clientAuth"}),
}
KEY_MODE = "400"


@dataclass(frozen=True)
class FileMeta:
    owner: str
    mode: str  # octal digits as `stat -c %a` prints them


@dataclass(frozen=True)
class CertOnHost:
    """One certificate/key pair as found on a host (public material only)."""

    chain_pem: list[str]  # leaf first, then the intermediate that step wrote with it
    key_public_pem: str | None  # public half of the key file, computed on the host
    crt_meta: FileMeta | None
    key_meta: FileMeta | None

    @property
    def leaf(self) -> x509.Certificate | None:
        return (
            x509.load_pem_x509_certificate(self.chain_pem[0].encode()) if self.chain_pem else None
        )


def pem_blocks(text: str, kind: str) -> list[str]:
    """Every PEM block of type ``kind`` (e.g. "CERTIFICATE") in ``text``."""
    return [m.group(0) for m in _PEM_RE.finditer(text) if m.group(1) == kind]


def parse_state_output(lines: list[str]) -> dict[str, CertOnHost]:
    """Parse the CertStates fact output: sections ``==> NAME`` with stat lines and PEMs."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if line.startswith("==> "):
            current = sections.setdefault(line[4:].strip(), [])
        elif current is not None:
            current.append(line)
    result = {}
    for name, body in sections.items():
        text = "\n".join(body) + "\n"
        meta: dict[str, FileMeta] = {}
        for line in body:
            if line.startswith(("crt-stat: ", "key-stat: ")):
                owner, mode = line.split(": ", 1)[1].split()
                meta[line[:3]] = FileMeta(owner=owner, mode=mode)
        keys = pem_blocks(text, "PUBLIC KEY")
        result[name] = CertOnHost(
            chain_pem=pem_blocks(text, "CERTIFICATE"),
            key_public_pem=keys[0] if keys else None,
            crt_meta=meta.get("crt"),
            key_meta=meta.get("key"),
        )
    return result


def _public_bytes(key) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def leaf_sans(cert: x509.Certificate) -> set[str]:
    """The DNS and IP SANs of ``cert`` as strings."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    dns = {n.lower() for n in ext.get_values_for_type(x509.DNSName)}
    return dns | {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}


def leaf_ekus(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return set()
    names = {
        ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
        ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    }
    return {names.get(oid, oid.dotted_string) for oid in ext}


def common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def lifetime_used(cert: x509.Certificate, now: datetime) -> float:
    """Fraction (0..1+) of the certificate's validity period that has passed."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    total = (end - start).total_seconds()
    return (now - start).total_seconds() / total if total > 0 else 1.0


def chains_to(chain_pem: list[str], root_pem: str) -> bool:
    """True if leaf -> (intermediates...) -> a root of ``root_pem`` (one, or a bundle
    during a root rotation) verifies signature by signature."""
    try:
        certs = [x509.load_pem_x509_certificate(p.encode()) for p in chain_pem]
        roots = [
            x509.load_pem_x509_certificate(p.encode()) for p in pem_blocks(root_pem, "CERTIFICATE")
        ]
    except ValueError:
        return False
    for root in roots:
        try:
            for child, parent in zip(certs, certs[1:] + [root], strict=True):
                child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature, IndexError):
            continue
        return bool(certs)
    return False


def issued_by(leaf: x509.Certificate, issuer_pem: str) -> bool:
    """``leaf`` was signed by the certificate ``issuer_pem`` (the CA's intermediate)."""
    try:
        leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(issuer_pem.encode()))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def key_type_of(key: object) -> str:
    """The `key_type` setting that makes ``key`` (a public key): `EC` (P-256), `RSA`
    (2048), `OKP` (Ed25519); anything else is described, matching none of them."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC" if key.curve.name == "secp256r1" else f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA" if key.key_size == 2048 else f"RSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "OKP"
    return type(key).__name__


def reissue_reason(
    found: CertOnHost | None,
    spec: CertSpec,
    root_pem: str,
    threshold_percent: int,
    now: datetime | None = None,
    revoked: frozenset[int] = frozenset(),
    intermediate: str | None = None,
    key_type: str | None = None,
) -> str | None:
    """Why ``spec`` must be issued anew on its host, or None if what is there is good.

    ``revoked``: serials the CA has revoked (etcd refuses them). ``intermediate``: the
    CA's current intermediate; a certificate of a previous one (before a rotation) is
    issued anew. ``key_type``: the setting; a key of another type is made anew.
    """
    now = now or datetime.now(UTC)
    if found is None or not found.chain_pem or found.crt_meta is None:
        return "certificate missing"
    if found.key_public_pem is None or found.key_meta is None:
        return "key missing or unreadable"
    try:
        leaf = found.leaf
        key = serialization.load_pem_public_key(found.key_public_pem.encode())
    except ValueError:
        return "certificate or key unreadable"
    if _public_bytes(leaf.public_key()) != _public_bytes(key):
        return "key does not match the certificate"
    if key_type and key_type_of(key) != key_type:
        return f"the key is {key_type_of(key)}, key_type is {key_type}"
    if not chains_to(found.chain_pem, root_pem):
        return "not issued by this CA"
    if intermediate and not issued_by(leaf, intermediate):
        return "issued by a previous intermediate of the CA"
    if leaf.serial_number in revoked:
        return f"revoked at the CA (serial {leaf.serial_number})"
    if leaf.not_valid_after_utc <= now:
        return f"expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if common_name(leaf) != spec.subject:
        return f"subject is {common_name(leaf)!r}, want {spec.subject!r}"
    if leaf_ekus(leaf) != EKUS[spec.kind]:
        return (
            f"usages {', '.join(sorted(leaf_ekus(leaf))) or '-'}, "
            f"want {', '.join(sorted(EKUS[spec.kind]))}"
        )
    have, want = leaf_sans(leaf), set(spec.sans)
    if have != want:
        return (
            f"SANs differ (missing: {', '.join(sorted(want - have)) or '-'}; "
            f"unexpected: {', '.join(sorted(have - want)) or '-'})"
        )
    used = lifetime_used(leaf, now)
    if used * 100 >= threshold_percent:
        return f"{used:.0%} of its lifetime used (renewal threshold {threshold_percent}%)"
    return None


def permission_problems(found: CertOnHost, spec: CertSpec) -> list[str]:
    """Owner/mode deviations of an otherwise good pair, as readable strings."""
    problems = []
    if found.crt_meta and found.crt_meta.mode != CRT_MODE:
        problems.append(f"{spec.crt} has mode {found.crt_meta.mode}, want {CRT_MODE}")
    if found.key_meta and (found.key_meta.owner, found.key_meta.mode) != (spec.owner, KEY_MODE):
        problems.append(
            f"{spec.key} is {found.key_meta.owner} {found.key_meta.mode}, "
            f"want {spec.owner} {KEY_MODE}"
        )
    return problems


def fingerprint(pem: str) -> str:
    """SHA-256 fingerprint of a certificate, as `step certificate fingerprint` prints it."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.fingerprint(hashes.SHA256()).hex()
