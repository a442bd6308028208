"""The host's metrics writer: one shell script per host (`{bin_dir}/etcd-pki-metrics`)
that writes `etcd_pki.prom` for node_exporter's textfile collector. The renewal units
run it after every run (``--renewal UNIT`` records that run's result first), the CRL
fetch unit after every fetch, and the deploy at the end of every run: the file's logic
lives here once. The metric names come from etcd_pki/metrics.py.

The script reads public files only (certificates, the root, the CRL), asks systemd for
the timers' next runs and, on the active CA, step-ca for its health. It writes a
temporary file next to the result, makes it readable by everyone (node_exporter runs as
its own user) and renames it into place: the collector never reads half a file.
Concurrent runs (timers firing together) take turns on a lock.
"""

from __future__ import annotations

import shlex

from .. import metrics as m
from ..plan import HostPlan

SCRIPT_NAME = "etcd-pki-metrics"
FAILED = "etcd-pki-metrics-failed"  # what the deploy's refresh prints when it failed


def script_path(bin_dir: str) -> str:
    return f"{bin_dir}/{SCRIPT_NAME}"


def output_path(metrics_dir: str) -> str:
    return f"{metrics_dir}/{m.FILE_NAME}"


def refresh_command(me: HostPlan) -> str:
    """The deploy's refresh: the script, and a word on stdout instead of a failure (the
    file is monitoring, never a reason to fail a deploy)."""
    return f"{shlex.quote(script_path(me.settings.bin_dir))} || echo {FAILED}"


_FUNCTIONS = r"""
epoch() { date -u -d "$1" +%s 2>/dev/null; }
dates() { # FILE: "notBefore notAfter" of its first certificate, Unix times
	if command -v openssl >/dev/null 2>&1; then
		d=$(openssl x509 -in "$1" -noout -startdate -enddate 2>/dev/null) || return 1
		b=$(printf '%s\n' "$d" | sed -n 's/^notBefore=//p')
		a=$(printf '%s\n' "$d" | sed -n 's/^notAfter=//p')
	else # a client host without openssl: step reads it
		d=$("$STEP" certificate inspect --format json "$1" 2>/dev/null) || return 1
		b=$(printf '%s\n' "$d" | sed -n 's/^ *"start": *"\([^"]*\)".*/\1/p' | head -n 1)
		a=$(printf '%s\n' "$d" | sed -n 's/^ *"end": *"\([^"]*\)".*/\1/p' | head -n 1)
	fi
	b=$(epoch "$b") && a=$(epoch "$a") && echo "$b $a"
}
second() { # FILE OUT: the second certificate of a bundle (the intermediate) into OUT
	awk '/-----BEGIN CERTIFICATE-----/ { n++ } n == 2' "$1" >"$2" && [ -s "$2" ]
}
next_run() { # TIMER: its next run, Unix time (nothing when it is not scheduled)
	v=$(systemctl show -P NextElapseUSecRealtime "$1" 2>/dev/null) && [ -n "$v" ] &&
		epoch "$v"
}
field() { # FILE N: the Nth word of FILE
	[ -f "$1" ] && awk -v n="$2" 'NR == 1 { print $n }' "$1"
}
sample() { # NAME{LABELS} VALUE: a sample line, when there is a value
	if [ -n "$2" ]; then printf '%s %s\n' "$1" "$2"; fi
}
healthy() { # URL: step-ca answers its health check (TLS verified against our root)
	if command -v curl >/dev/null 2>&1; then
		h=$(curl -fsS --max-time 5 --proto =https --cacert "$ROOT" "$1" 2>/dev/null)
	elif command -v wget >/dev/null 2>&1; then
		h=$(wget -q -T 5 --ca-certificate="$ROOT" -O - "$1" 2>/dev/null)
	else
		return 1
	fi
	case $h in *'"ok"'*) return 0 ;; *) return 1 ;; esac
}
"""

_RECORD = r"""
if [ "${1:-}" = --renewal ]; then
	# Called by a renewal unit's ExecStopPost: systemd says how the run ended.
	unit=${2:-}
	case $unit in '' | *[!A-Za-z0-9._-]*) echo "bad unit name: $unit" >&2; exit 2 ;; esac
	case ${SERVICE_RESULT:-} in
	success) echo "1 $now" >"$STATE/$unit.result" && echo "$now" >"$STATE/$unit.success" ;;
	exec-condition | '') ;; # not due (ExecCondition): nothing was tried
	*) echo "0 $now" >"$STATE/$unit.result" ;;
	esac
fi
"""


def metrics_script(me: HostPlan, ca_health_url: str | None, state_dir: str = m.STATE_DIR) -> str:
    """The script for ``me``; ``ca_health_url`` on the active CA only (step-ca's
    /health as the host itself reaches it); ``state_dir`` where renewal results stay."""
    s = me.settings
    q = shlex.quote
    role = m.host_role(me.is_etcd)
    lines = [
        "#!/bin/sh",
        "# Managed by the etcd PKI deploy (pyinfra). Changes here are overwritten.",
        f"# Writes {output_path(s.metrics_dir)} for node_exporter's textfile collector",
        "# (docs/metrics.md): run by every renewal unit after its run (--renewal UNIT),",
        "# by the CRL fetch and by every deploy.",
        "set -u",
        f"OUT={q(output_path(s.metrics_dir))}",
        f"STATE={q(state_dir)}",
        f"STEP={q(s.bin_dir + '/step')}",
        f"ROOT={q(s.trusted_root)}",
        "umask 022",
        'mkdir -p "$STATE" "${OUT%/*}" || exit 1',
        "now=$(date +%s)",
        # One writer at a time: the last one renames a file with every result in it.
        'exec 9>>"$STATE/.lock" || exit 1',
        "flock -w 60 9 || exit 1",
        'work=$(mktemp -d "$STATE/.work-XXXXXX") || exit 1',
        "trap 'rm -rf \"$work\"' EXIT",
        "trap 'exit 1' HUP INT TERM",
        _FUNCTIONS.strip(),
        _RECORD.strip(),
    ]
    cert_samples: dict[str, list[str]] = {x.name: [] for x in m.CERT_METRICS}
    for i, cert in enumerate(me.certs):
        v = f"c{i}"
        lines += [
            f"# {cert.name}",
            f"set -- $(dates {q(cert.crt)}); {v}_nb=${{1:-}}; {v}_na=${{2:-}}",
            f"{v}_th=",
            f'if [ -n "${v}_na" ]; then '
            f"{v}_th=$(({v}_nb + ({v}_na - {v}_nb) * {s.renew_threshold_percent} / 100)); fi",
            f"{v}_next=$(next_run {q(cert.unit + '.timer')})",
            f'{v}_ok=$(field "$STATE"/{q(cert.unit + ".result")} 1)',
            f"{v}_ok=${{{v}_ok:-1}}",  # no run has tried yet: nothing failed
            f'{v}_last=$(field "$STATE"/{q(cert.unit + ".success")} 1)',
        ]
        ls = m.labels(m.cert_labels(role, cert.kind, cert.subject))
        for metric, var in zip(
            m.CERT_METRICS, ("na", "nb", "th", "last", "ok", "next"), strict=True
        ):
            cert_samples[metric.name].append(f'sample {q(metric.name + ls)} "${v}_{var}"')
    lines += [
        'set -- $(dates "$ROOT"); root_na=${2:-}',
        "inter_na=",
    ]
    if me.certs:
        lines.append(
            f'if second {q(me.certs[0].crt)} "$work/inter.pem"; then '
            'set -- $(dates "$work/inter.pem"); inter_na=${2:-}; fi'
        )
    body = []
    for metric in m.CERT_METRICS:
        body.append(f"printf '%s\\n' {q(metric.header())}")
        body += cert_samples[metric.name]
    ca = m.CA_NOT_AFTER
    body += [
        f"printf '%s\\n' {q(ca.header())}",
        f'sample {q(ca.name + m.labels({"certificate": "root"}))} "$root_na"',
        f'sample {q(ca.name + m.labels({"certificate": "intermediate"}))} "$inter_na"',
    ]
    if me.is_etcd:
        lines += [
            "crl_next= crl_number=",
            f"if d=$(openssl crl -inform DER -in {q(s.crl_file)} -noout -nextupdate -crlnumber "
            "2>/dev/null); then",
            "\tcrl_next=$(epoch \"$(printf '%s\\n' \"$d\" | sed -n 's/^nextUpdate=//p')\")",
            "\tn=$(printf '%s\\n' \"$d\" | sed -n 's/^crlNumber=//p')",
            "\tcase $n in 0x[0-9A-Fa-f]*) crl_number=$((n)) ;; esac",
            "fi",
        ]
        for metric, var in ((m.CRL_NEXT_UPDATE, "crl_next"), (m.CRL_NUMBER, "crl_number")):
            body += [f"printf '%s\\n' {q(metric.header())}", f'sample {metric.name} "${var}"']
    if ca_health_url:
        lines.append(f"ca_up=0; if healthy {q(ca_health_url)}; then ca_up=1; fi")
        body += [
            f"printf '%s\\n' {q(m.STEP_CA_UP.header())}",
            f'sample {m.STEP_CA_UP.name} "$ca_up"',
        ]
    body += [
        f"printf '%s\\n' {q(m.WRITTEN.header())}",
        f'sample {m.WRITTEN.name} "$(date +%s)"',
    ]
    lines += [
        'tmp=$(mktemp "${OUT%/*}/.etcd_pki.prom.XXXXXX") || exit 1',
        "{",
        *("\t" + b for b in body),
        '} >"$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" "$OUT" || { rm -f "$tmp"; exit 1; }',
    ]
    return "\n".join(lines) + "\n"
