"""Did a run really do the job? Checked on the hosts themselves, with openssl, for our
deploy and the peer alike: every certificate of the plan chains to the CA's root, has
the plan's subject, SANs and key usages, its key is on its host, matches it, and both
have the plan's owners and modes. A failure stops the bench (a comparison against a
run that silently skipped work is worthless).
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping

from etcd_pki.plan import CertSpec, ClusterPlan
from tests import testbed as tb

from ..measure import BenchError

SERVER_AND_CLIENT = "TLSWebServerAuthentication,TLSWebClientAuthentication"
CLIENT_ONLY = "TLSWebClientAuthentication"


def check_script(certs: tuple[CertSpec, ...]) -> str:
    """Shell that reads the root on stdin and prints, per certificate, ``== NAME`` then
    ``key value`` lines: verify, subject, sans, eku, keymatch, keystat, crtstat."""
    parts = ['set -u; t=$(mktemp); trap \'rm -f "$t"\' EXIT; cat > "$t"']
    for c in certs:
        crt, key = shlex.quote(c.crt), shlex.quote(c.key)
        parts.append(
            f"echo '== {c.name}'; "
            f'if openssl verify -CAfile "$t" -untrusted {crt} {crt} >/dev/null 2>&1; '
            "then echo 'verify ok'; else echo 'verify FAILED'; fi; "
            f'echo "subject $(openssl x509 -in {crt} -noout -subject -nameopt RFC2253 2>&1)"; '
            f'echo "sans $(openssl x509 -in {crt} -noout -ext subjectAltName 2>/dev/null '
            "| tail -n +2 | tr -d ' ')\"; "
            f'echo "eku $(openssl x509 -in {crt} -noout -ext extendedKeyUsage 2>/dev/null '
            "| tail -n +2 | tr -d ' ')\"; "
            f"a=$(openssl x509 -in {crt} -noout -pubkey 2>/dev/null); "
            f"b=$(openssl pkey -in {key} -pubout 2>/dev/null); "
            'if [ -n "$a" ] && [ "$a" = "$b" ]; then echo "keymatch yes"; '
            'else echo "keymatch no"; fi; '
            f"echo \"keystat $(stat -c '%U:%G %a' {key} 2>&1)\"; "
            f"echo \"crtstat $(stat -c '%U:%G %a' {crt} 2>&1)\""
        )
    return "; ".join(parts)


def parse_report(output: str) -> dict[str, dict[str, str]]:
    """``check_script``'s output: {certificate name: {key: value}}."""
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in output.splitlines():
        if line.startswith("== "):
            current = found.setdefault(line[3:].strip(), {})
        elif current is not None and line.strip():
            key, _, value = line.partition(" ")
            current[key] = value.strip()
    return found


def _sans(text: str) -> set[str]:
    """``DNS:a,IPAddress:1.2.3.4`` -> {"a", "1.2.3.4"}."""
    return {item.partition(":")[2] for item in text.split(",") if item}


def problems_of(cert: CertSpec, seen: Mapping[str, str] | None) -> list[str]:
    """What is wrong with ``cert`` on its host, from its parsed report."""
    where = f"{cert.host} {cert.name}"
    if not seen:
        return [f"{where}: not checked (no report)"]
    out = []
    if seen.get("verify") != "ok":
        out.append(f"{where}: does not verify against the CA's root")
    if seen.get("subject") != f"subject=CN={cert.subject}":
        out.append(f"{where}: subject {seen.get('subject')!r}, wanted CN={cert.subject}")
    if _sans(seen.get("sans", "")) != set(cert.sans):
        out.append(f"{where}: SANs {seen.get('sans')!r}, wanted {sorted(cert.sans)}")
    eku = CLIENT_ONLY if cert.kind == "client" else SERVER_AND_CLIENT
    if seen.get("eku") != eku:
        out.append(f"{where}: extended key usage {seen.get('eku')!r}, wanted {eku}")
    if seen.get("keymatch") != "yes":
        out.append(f"{where}: no key on the host that matches the certificate")
    if seen.get("keystat") != f"{cert.owner}:{cert.owner} 400":
        out.append(f"{where}: key {seen.get('keystat')!r}, wanted {cert.owner}:{cert.owner} 400")
    if seen.get("crtstat") != "root:root 644":
        out.append(f"{where}: certificate {seen.get('crtstat')!r}, wanted root:root 644")
    return out


def verify_issued(plan: ClusterPlan, what: str) -> int:
    """Check every certificate of ``plan`` on the running bed; raise BenchError listing
    every problem; return how many certificates were checked."""
    s = plan.ca.settings
    rc, root = tb.exec_in(plan.ca.name, ["cat", f"{s.ca_dir}/certs/root_ca.crt"])
    if rc != 0 or "BEGIN CERTIFICATE" not in root:
        raise BenchError(f"{what}: no root certificate in {s.ca_dir}/certs on {plan.ca.name}")
    problems: list[str] = []
    checked = 0
    for host in plan.hosts.values():
        proc = subprocess.run(
            ["docker", "exec", "-i", tb.container_name(host.name), "sh", "-c"]
            + [check_script(host.certs)],
            input=root,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        report = parse_report(proc.stdout)
        for cert in host.certs:
            problems += problems_of(cert, report.get(cert.name))
            checked += 1
    if problems:
        raise BenchError(f"{what} did not do the job:\n  " + "\n  ".join(problems))
    return checked
