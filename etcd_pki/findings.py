"""What the audit reports: its rules with their meaning, and a finding.

No pyinfra import. The rules themselves are in ``etcd_pki/audit.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"
UNIT_DIR = "/etc/systemd/system"
CONTROLLER = "controller"

# Every rule the audit knows, with what it means (printed by `audit.py --data
# audit_rules=true` and kept in sync with the unit tests).
RULES = {
    "unreachable": "the host's facts could not be read",
    "cert-missing": "a planned certificate file is missing",
    "cert-unreadable": "the certificate or its key cannot be parsed",
    "crt-mode": "a certificate file is not mode 644",
    "key-missing": "a planned key file is missing",
    "key-unreadable": "the key file exists but its public half cannot be computed",
    "key-owner": "a key file does not belong to the user that reads it",
    "key-mode": "a key file is not mode 400",
    "key-mismatch": "the key does not match the certificate",
    "chain": "the certificate does not chain to the CA's root",
    "subject": "the certificate's common name is not the planned subject",
    "sans": "the certificate's SANs differ from what the inventory implies",
    "eku": "the certificate lacks an extended key usage etcd needs",
    "eku-extra": "the certificate has a usage its role does not need (a client that can serve)",
    "expired": "the certificate has expired",
    "renewal-overdue": "more than halfway from the renewal threshold to expiry",
    "renewal-due": "past the renewal threshold (warning: the timer renews it next run)",
    "timer-missing": "the certificate's renewal timer is not installed",
    "timer-disabled": "the renewal timer is not enabled",
    "timer-inactive": "the renewal timer is not active (not scheduled)",
    "renewal-failed": "the renewal service's last run failed (warning; see its journal)",
    "root-missing": "ssl_dir/root_ca.crt is missing",
    "root-mismatch": "ssl_dir/root_ca.crt is not the CA's root",
    "ca-root-missing": "the active cert-manager has no root certificate",
    "ca-file-missing": "a file of the CA is missing on the active cert-manager",
    "ca-file-owner": "a file of the CA has the wrong owner or group",
    "ca-file-mode": "a file of the CA has the wrong mode",
    "ca-service": "step-ca is not enabled and running on the active cert-manager",
    "standby-ca-running": "step-ca runs on a standby cert-manager (two CAs would serve)",
    "ca-secret-off-manager": "a CA key or password on a host that is not a cert-manager",
    "ca-secret-outside-ca-dir": "a CA key or password outside ca_dir on a cert-manager",
    "stray-private-key": "a private key the plan does not account for",
    "controller-private-key": "a private key or CA secret on the controller",
    "cert-revoked": "a certificate on the host is revoked at the CA (etcd refuses it)",
    "ca-crl": "the active CA serves no CRL at /1.0/crl",
    "crl-missing": "an etcd member has no CRL (its etcd refuses every connection)",
    "crl-invalid": "a member's CRL does not parse or is not signed by the CA",
    "crl-expired": "a member's CRL is past its nextUpdate",
    "crl-stale": "a member's CRL lacks revocations the CA's CRL lists",
    "crl-behind": "a member's CRL is older than the CA's for 3 h (warning: is its timer on?)",
    "crl-timer": "the member's CRL fetch timer is not enabled and active",
    "crl-fetch-failed": "the last CRL fetch failed (warning; the installed CRL stays)",
    "ca-expiring": "the root or intermediate expires within a year (warning: rotate_ca.py)",
    "leaf-outlives-issuer": "a certificate is valid past its intermediate (warning: rotate it)",
}


@dataclass(frozen=True, order=True)
class Finding:
    """One violation (or warning): on ``host``, about ``path``, breaking ``rule``."""

    host: str
    path: str
    rule: str
    detail: str
    severity: str = ERROR

    def line(self) -> str:
        mark = "" if self.severity == ERROR else f" ({self.severity})"
        return f"{self.host}: {self.path}: {self.rule}{mark}: {self.detail}"

    def as_dict(self) -> dict[str, str]:
        return {
            "host": self.host,
            "path": self.path,
            "rule": self.rule,
            "severity": self.severity,
            "detail": self.detail,
        }
