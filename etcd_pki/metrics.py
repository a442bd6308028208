"""The metrics each host writes for node_exporter's textfile collector (`etcd_pki.prom`):
their names, types, help and labels, defined once. No pyinfra: the script that writes
the file (etcd_pki/commands/metrics.py), the alert rules' tests and the e2e test read
the names from here.

Names follow Prometheus' conventions: prefix ``etcd_pki_``, the unit in the name
(``_timestamp_seconds`` for Unix times), a 0/1 gauge for a yes/no state. A certificate's
labels are the host's role, the certificate's kind and its subject (no serial: it
changes at every renewal and would make a new series each time).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

FILE_NAME = "etcd_pki.prom"
PREFIX = "etcd_pki_"
# Where the renewal units record their last result between runs (per host, not CA
# material; one small file per certificate).
STATE_DIR = "/var/lib/etcd-pki/metrics"

CERT_LABELS = ("role", "kind", "subject")
ROLES = ("etcd", "client")  # an etcd member (cert-managers are members) or a client host


@dataclass(frozen=True)
class Metric:
    """One metric family of the file."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    type: str = "gauge"

    def header(self) -> str:
        """The ``# HELP`` and ``# TYPE`` lines that open its samples."""
        return f"# HELP {self.name} {escape_help(self.help)}\n# TYPE {self.name} {self.type}"


CERT_NOT_AFTER = Metric(
    "etcd_pki_certificate_not_after_timestamp_seconds",
    "End of the certificate's validity (notAfter), Unix time.",
    CERT_LABELS,
)
CERT_NOT_BEFORE = Metric(
    "etcd_pki_certificate_not_before_timestamp_seconds",
    "Start of the certificate's validity (notBefore), Unix time.",
    CERT_LABELS,
)
CERT_RENEWAL_THRESHOLD = Metric(
    "etcd_pki_certificate_renewal_threshold_timestamp_seconds",
    "When the certificate passes renew_threshold_percent of its lifetime and its timer "
    "renews it, Unix time.",
    CERT_LABELS,
)
CERT_LAST_RENEWAL_SUCCESS = Metric(
    "etcd_pki_certificate_last_renewal_success_timestamp_seconds",
    "When its renewal unit last renewed the certificate, Unix time (absent: never yet).",
    CERT_LABELS,
)
CERT_LAST_RENEWAL_RESULT = Metric(
    "etcd_pki_certificate_last_renewal_success",
    "1 if the last renewal run that tried to renew succeeded (or none has run yet), 0 if "
    "it failed (see journalctl -u step-renew-HOST-KIND.service).",
    CERT_LABELS,
)
CERT_TIMER_NEXT_RUN = Metric(
    "etcd_pki_certificate_renewal_timer_next_run_timestamp_seconds",
    "Next run of the certificate's renewal timer, Unix time (absent: timer not active).",
    CERT_LABELS,
)
CA_NOT_AFTER = Metric(
    "etcd_pki_ca_certificate_not_after_timestamp_seconds",
    "End of validity of the CA's root and of the intermediate that signed this host's "
    "certificates, Unix time.",
    ("certificate",),
)
CRL_NEXT_UPDATE = Metric(
    "etcd_pki_crl_next_update_timestamp_seconds",
    "nextUpdate of the CRL etcd checks connections against (etcd members), Unix time.",
)
CRL_NUMBER = Metric(
    "etcd_pki_crl_number",
    "CRL number of the CRL etcd checks connections against (etcd members).",
)
STEP_CA_UP = Metric(
    "etcd_pki_step_ca_up",
    "1 if step-ca answered its /health check when the file was written (active CA only).",
)
WRITTEN = Metric(
    "etcd_pki_metrics_written_timestamp_seconds",
    "When this file was last written, Unix time.",
)

CERT_METRICS = (
    CERT_NOT_AFTER,
    CERT_NOT_BEFORE,
    CERT_RENEWAL_THRESHOLD,
    CERT_LAST_RENEWAL_SUCCESS,
    CERT_LAST_RENEWAL_RESULT,
    CERT_TIMER_NEXT_RUN,
)
METRICS = (*CERT_METRICS, CA_NOT_AFTER, CRL_NEXT_UPDATE, CRL_NUMBER, STEP_CA_UP, WRITTEN)

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def escape_help(text: str) -> str:
    r"""HELP text as the exposition format wants it (``\`` and newline escaped)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label(value: str) -> str:
    r"""A label value as the exposition format wants it (``\``, ``"``, newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(values: Mapping[str, str]) -> str:
    """``{name="value",...}`` in the given order ("" without labels)."""
    if not values:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in values.items()) + "}"


def cert_labels(role: str, kind: str, subject: str) -> dict[str, str]:
    """A certificate's label set (the order of CERT_LABELS)."""
    return dict(zip(CERT_LABELS, (role, kind, subject), strict=True))


def host_role(is_etcd: bool) -> str:
    return ROLES[0] if is_etcd else ROLES[1]


def problems(metrics: Iterable[Metric] = METRICS) -> list[str]:
    """What breaks Prometheus' naming conventions in ``metrics`` (empty: none)."""
    out = []
    seen = set()
    for m in metrics:
        if m.name in seen:
            out.append(f"{m.name}: defined twice")
        seen.add(m.name)
        if not _NAME_RE.match(m.name) or not m.name.startswith(PREFIX):
            out.append(f"{m.name}: not a metric name starting with {PREFIX}")
        if m.type != "gauge":
            out.append(f"{m.name}: only gauges are written")
        if "timestamp" in m.name and not m.name.endswith("_timestamp_seconds"):
            out.append(f"{m.name}: a time is in _timestamp_seconds")
        if m.name.endswith(("_total", "_count", "_sum", "_bucket")):
            out.append(f"{m.name}: a gauge has no counter/histogram suffix")
        for label in m.labels:
            if not _LABEL_RE.match(label) or label.startswith("__"):
                out.append(f"{m.name}: bad label name {label!r}")
    return out


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples of an exposition ``text`` (the file, or node_exporter's /metrics): (name,
    sorted labels) -> value. For tests and checks; label values are unescaped."""
    out = {}
    sample = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$")
    pair = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = sample.match(line.strip())
        if not m:
            raise ValueError(f"not a sample line: {line!r}")
        found = tuple(
            sorted(
                (k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
                for k, v in pair.findall(m.group(3) or "")
            )
        )
        out[(m.group(1), found)] = float(m.group(4))
    return out
