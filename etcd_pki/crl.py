"""Revocation that etcd enforces: step-ca's CRL, its checks, and the CA's ledger.

No pyinfra import. The deploy, the audit, the status report and the tests read the
same functions:

* ``inspect_crl`` parses a CRL (DER, as etcd 3.6+ requires) with ``cryptography`` and
  ``crl_problem`` applies the checks a member's fetch applies before it installs one
  (parses, signed by this CA's intermediate, which chains to the root, nextUpdate in
  the future). The fetch itself runs on the member (templates/etcd-pki-crl-fetch.j2).
* ca.json's ``crl`` block (step-ca publishes the CRL at /1.0/crl and regenerates it on
  every revocation) is read and written on the CA node by the shell built here.
* The ledger (``ledger.tsv`` in ca_dir, public data only) records every certificate
  step-ca signed, renewed or rekeyed (from its own log) and every revocation the deploy
  made. It travels with the CA material to standbys and backups, so a certificate can
  be revoked by serial, from the CA node, without its key, even when its host is gone.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from .certs import chains_to
from .settings import parse_duration

CRL_FILE = "crl.der"  # in ssl_dir, beside root_ca.crt
LEDGER = "ledger.tsv"  # in ca_dir
CRL_PATH = "/1.0/crl"  # step-ca serves the current CRL here (DER) ...
INTERMEDIATES_PATH = "/intermediates.pem"  # ... and the certificate that signs it here
# The paths of step-ca's request log that issue a certificate.
ISSUING_PATHS = ("/sign", "/renew", "/rekey")
REVOKE_REASONS = re.compile(r"^[A-Za-z0-9 ,.()_-]{1,100}$")


@dataclass(frozen=True)
class CrlInfo:
    """What a CRL says (public)."""

    number: int | None
    this_update: datetime
    next_update: datetime | None
    issuer: x509.Name
    serials: frozenset[int]
    crl: x509.CertificateRevocationList

    @property
    def issuer_text(self) -> str:
        return self.issuer.rfc4514_string()


def inspect_crl(der: bytes) -> CrlInfo:
    """Parse a DER CRL; ValueError when it is not one (PEM included: etcd 3.6+ reads DER)."""
    try:
        crl = x509.load_der_x509_crl(der)
    except ValueError as e:
        raise ValueError(f"not a DER CRL ({e})") from None
    try:
        number = crl.extensions.get_extension_for_oid(ExtensionOID.CRL_NUMBER).value.crl_number
    except x509.ExtensionNotFound:
        number = None
    return CrlInfo(
        number=number,
        this_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        issuer=crl.issuer,
        serials=frozenset(r.serial_number for r in crl),
        crl=crl,
    )


def crl_problem(
    der: bytes | None,
    intermediate_pem: str | None,
    root_pem: str | None,
    now: datetime | None = None,
) -> str | None:
    """Why ``der`` must not be (or stay) etcd's CRL, or None when it is good: it parses,
    it is signed by ``intermediate_pem`` (our issuer) and that chains to ``root_pem``,
    its nextUpdate lies ahead. Without the intermediate or root only parsing and
    nextUpdate are checked."""
    now = now or datetime.now(UTC)
    if not der:
        return "missing"
    try:
        info = inspect_crl(der)
    except ValueError as e:
        return f"unreadable: {e}"
    if intermediate_pem:
        try:
            issuer = x509.load_pem_x509_certificate(intermediate_pem.encode())
        except ValueError:
            return "the CA's intermediate certificate is unreadable"
        if info.issuer != issuer.subject:
            return (
                f"issued by {info.issuer_text}, not by this CA ({issuer.subject.rfc4514_string()})"
            )
        if not info.crl.is_signature_valid(issuer.public_key()):
            return "its signature is not from this CA's intermediate key"
        if root_pem and not chains_to([intermediate_pem], root_pem):  # a bundle in a rotation
            return "the CA's intermediate certificate does not chain to the root"
    if info.next_update is None:
        return "it has no nextUpdate"
    if info.next_update <= now:
        return f"its nextUpdate ({info.next_update:%Y-%m-%d %H:%M} UTC) has passed"
    return None


def decode_b64(text: str | None) -> bytes | None:
    """Bytes of a base64 text read from a host (None when empty or not base64)."""
    if not text or not text.strip():
        return None
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def serials_of(der: bytes | None) -> frozenset[int] | None:
    """The revoked serials of a CRL, or None when it is missing or unreadable."""
    if not der:
        return None
    try:
        return inspect_crl(der).serials
    except ValueError:
        return None


# --- ca.json: the crl block ------------------------------------------------------------


def crl_block(cache_duration: str) -> dict[str, object]:
    """ca.json's `crl` object: publish a CRL, regenerate it on every revocation, valid
    (nextUpdate) for ``cache_duration``."""
    return {"enabled": True, "generateOnRevoke": True, "cacheDuration": cache_duration}


def crl_config_matches(found: dict | None, cache_duration: str) -> bool:
    """ca.json's `crl` object (``found``, {} when absent) is the one we want."""
    if not isinstance(found, dict):
        return False
    try:
        same_duration = parse_duration(str(found.get("cacheDuration", ""))) == parse_duration(
            cache_duration
        )
    except ValueError:
        return False
    return found.get("enabled") is True and found.get("generateOnRevoke") is True and same_duration


# step writes ca.json with Go's json.MarshalIndent and tabs: a top-level key is one tab in.
CRL_START = r'^\t"crl"[ \t]*:'
CLOSES_ON_LINE = r"\}[ \t]*,?[ \t]*$"  # `"crl": {...},` on one line
BLOCK_END = r"^\t\},?[ \t]*$"  # the line that closes a top-level object


def crl_config_fact_command(ca_json: str) -> str:
    """Print ca.json's top-level `crl` object (nothing else of the file), then `__ca__`;
    nothing when there is no ca.json."""
    f = shlex.quote(ca_json)
    program = (
        f"!f && /{CRL_START}/ {{ f = 1; print; if ($0 ~ /{CLOSES_ON_LINE}/) exit; next }} "
        f"f {{ print; if ($0 ~ /{BLOCK_END}/) exit }}"
    )
    return f"if [ -f {f} ]; then awk {shlex.quote(program)} {f}; echo __ca__; fi; true"


def parse_crl_config(lines: Iterable[str]) -> dict | None:
    """The `crl` object printed by :func:`crl_config_fact_command`: None without ca.json,
    {} when ca.json has none (or one that does not parse)."""
    lines = list(lines)
    if "__ca__" not in lines:
        return None
    text = "\n".join(line for line in lines if line != "__ca__").strip()
    if not text:
        return {}
    _, _, value = text.partition(":")
    try:
        found = json.loads(value.strip().rstrip(","))
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


# --- the ledger ------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerEntry:
    """One line of the ledger: a certificate step-ca issued, or a revocation.

    ``issued SERIAL SUBJECT NOT_AFTER PATH`` (from step-ca's log: PATH is /sign, /renew
    or /rekey) and ``revoked SERIAL SUBJECT NOT_AFTER REASON REVOKED_AT`` (written by the
    revocation; NOT_AFTER is "-" when unknown), tab-separated, times in RFC 3339 UTC.
    """

    kind: str  # "issued" | "revoked"
    serial: int
    subject: str
    expires: str
    detail: str
    time: str = ""

    @property
    def not_after(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.expires.replace("Z", "+00:00"))
        except ValueError:
            return None

    def line(self) -> str:
        fields = [self.kind, str(self.serial), self.subject, self.expires, self.detail]
        return "\t".join([*fields, self.time] if self.time else fields)


def parse_ledger(text: str) -> list[LedgerEntry]:
    """Entries of a ledger text (tab-separated; unknown or broken lines are skipped)."""
    entries = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) < 5 or fields[0] not in ("issued", "revoked") or not fields[1].isdigit():
            continue
        entries.append(LedgerEntry(fields[0], int(fields[1]), *fields[2:5], *fields[5:6]))
    return entries


def revoked_line(
    serial: int, subject: str, not_after: datetime | None, reason: str, when: datetime
) -> str:
    """The ledger line recording a revocation."""
    expires = not_after.strftime("%Y-%m-%dT%H:%M:%SZ") if not_after else "-"
    return LedgerEntry(
        "revoked", serial, subject, expires, reason, when.strftime("%Y-%m-%dT%H:%M:%SZ")
    ).line()


@dataclass(frozen=True)
class Issued:
    """A certificate of the ledger that is still valid and not revoked."""

    serial: int
    subject: str
    not_after: datetime | None


@dataclass(frozen=True)
class Revocation:
    """One certificate to revoke at the CA, by serial."""

    serial: int
    subject: str  # "" when only the serial is known (from a member's CRL)
    not_after: datetime | None
    reason: str


def reapply(
    ca_crl: CrlInfo | None,
    ledger_revoked: dict[int, LedgerEntry],
    member_crls: Iterable[CrlInfo],
) -> list[Revocation]:
    """Revocations the active CA must make again: its database lacks them after a
    failover to a standby (which has no copy of it) or a restore of an older backup.

    Sources: the ledger's revocations of unexpired certificates (``ledger_revoked``), and
    the CRLs members hold that are newer than the CA's own (a higher CRL number: the CA
    numbers anew from its database). A member's CRL that is merely behind is not one.
    """
    have = ca_crl.serials if ca_crl else frozenset()
    number = (ca_crl.number or 0) if ca_crl else -1
    out = {
        s: Revocation(s, e.subject, e.not_after, "revoked before a failover or restore")
        for s, e in ledger_revoked.items()
        if s not in have
    }
    for crl in member_crls:
        if (crl.number or 0) > number:
            for serial in sorted(crl.serials - have):
                out.setdefault(
                    serial, Revocation(serial, "", None, "revoked before a failover or restore")
                )
    return [out[s] for s in sorted(out)]


def fetch_reason(
    installed: bytes | None,
    intermediate_pem: str | None,
    root_pem: str | None,
    wanted: frozenset[int],
    now: datetime | None = None,
) -> str | None:
    """Why a member must fetch the CRL now, or None: its CRL (``installed``) is missing,
    does not pass `crl_problem`, or lacks one of the ``wanted`` revoked serials."""
    problem = crl_problem(installed, intermediate_pem, root_pem, now)
    if problem:
        return f"CRL {problem}"
    missing = wanted - (serials_of(installed) or frozenset())
    if missing:
        return f"CRL lacks {len(missing)} revocation(s) the CA knows"
    return None


def live_certificates(
    entries: Sequence[LedgerEntry], subjects: Iterable[str], now: datetime | None = None
) -> list[Issued]:
    """Certificates issued to ``subjects`` that have not expired and the ledger does not
    record as revoked, oldest first."""
    now = now or datetime.now(UTC)
    wanted = set(subjects)
    revoked = {e.serial for e in entries if e.kind == "revoked"}
    found: dict[int, Issued] = {}
    for e in entries:
        if e.kind != "issued" or e.subject not in wanted or e.serial in revoked:
            continue
        after = e.not_after
        if after is not None and after <= now:
            continue
        found.setdefault(e.serial, Issued(e.serial, e.subject, after))
    return list(found.values())


def live_revocations(
    entries: Sequence[LedgerEntry], now: datetime | None = None
) -> dict[int, LedgerEntry]:
    """The ledger's revocations of certificates known to be still unexpired, by serial
    (step-ca drops a certificate from its CRL once it has expired)."""
    now = now or datetime.now(UTC)
    expiry = {e.serial: e.not_after for e in entries if e.kind == "issued"}
    live = {}
    for e in entries:
        after = (e.not_after or expiry.get(e.serial)) if e.kind == "revoked" else None
        if after is not None and after > now:
            live[e.serial] = e
    return live
