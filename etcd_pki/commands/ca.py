"""The CA node's configuration: `step ca init`, the provisioner's claims and leaf
template, the CRL setting, the root key's own password, the ledger, names and URL."""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from ..crl import BLOCK_END, CLOSES_ON_LINE, CRL_START, crl_block
from ..plan import ClusterPlan
from ..settings import Settings
from .shell import on_exit

# What `step ca init` creates; found without config/ca.json they are an interrupted init.
INIT_OUTPUTS = (
    "certs",
    "config",
    "db",
    "templates",
    "secrets/root_ca_key",
    "secrets/intermediate_ca_key",
)


# ca.json claim -> the group_data setting it must equal.
CLAIMS = {
    "minTLSCertDuration": "cert_lifetime_min",
    "maxTLSCertDuration": "cert_lifetime_max",
    "defaultTLSCertDuration": "cert_lifetime",
}


# The provisioner's x509 template (step's default leaf template, but a subject ending in
# "-client" gets clientAuth only: a client certificate cannot serve).
LEAF_TEMPLATE = (Path(__file__).resolve().parents[2] / "templates" / "step-leaf.tpl").read_text()


def claims_command(s: Settings, ca_json: str | None = None) -> str:
    """Write the lifetime claims and the leaf template into the provisioner in ca.json
    (offline edit; `step` parses the whole file as step-ca does and writes it back in its
    own layout, the template embedded)."""
    template = base64.b64encode(LEAF_TEMPLATE.encode()).decode()
    return (
        f'tpl=$(mktemp) && printf %s {template} | base64 -d > "$tpl" && '
        f"STEPPATH={s.ca_dir} {s.bin_dir}/step ca provisioner update "
        f"{shlex.quote(s.ca_provisioner)} --ca-config {ca_json or s.ca_json} "
        f"--x509-min-dur={s.cert_lifetime_min} --x509-max-dur={s.cert_lifetime_max} "
        f'--x509-default-dur={s.cert_lifetime} --x509-template="$tpl"; '
        'rc=$?; rm -f "$tpl"; [ $rc = 0 ]'
    )


def crl_config_command(s: Settings) -> str:
    """Set ca.json's `crl` object: step-ca publishes a CRL valid for `crl_cache_duration`
    and makes a new one on every revocation. The edited copy is parsed and rewritten by
    `step` (`claims_command`) before it replaces ca.json: a file step-ca could not read
    is never put in place."""
    f = shlex.quote(s.ca_json)
    return (
        f"set -e; tmp=$(mktemp {f}.XXXXXX); trap 'rm -f \"$tmp\"' EXIT; "
        + set_crl_command(s.ca_json, crl_block(s.crl_cache_duration))
        + "; "
        + claims_command(s, ca_json='"$tmp"')
        + f' >/dev/null; chown --reference={f} "$tmp"; chmod --reference={f} "$tmp"; '
        f'mv -f "$tmp" {f}; trap - EXIT'
    )


def root_password_file(s: Settings) -> str:
    return f"{s.ca_dir}/secrets/root_ca_key.password.age"


def root_key_command(s: Settings) -> str:
    """Re-encrypt the root key with a new random password that is stored only
    age-encrypted to `backup_recipients`: the running CA (which reads secrets/password)
    cannot use the root key, and nobody on the host can without an operator's identity.
    The encrypted password is written before the key changes: an interruption leaves the
    key as it was (with the CA's password), and the next run starts again."""
    d = shlex.quote(s.ca_dir)
    recipients = " ".join(f"-r {shlex.quote(r)}" for r in s.backup_recipients)
    out = shlex.quote(root_password_file(s))
    return (
        "set -e; umask 077; t=$(mktemp -d /run/etcd-pki-root.XXXXXX); "
        + on_exit('rm -rf "$t"')
        + "; "
        'head -c 32 /dev/urandom | base64 -w0 > "$t/new"; '
        f"{s.bin_dir}/step crypto change-pass {d}/secrets/root_ca_key "
        f'--password-file {d}/secrets/password --new-password-file "$t/new" '
        '--out "$t/key" --force >/dev/null; '
        f'age -a {recipients} -o "$t/pw.age" "$t/new"; '
        f'install -o root -g root -m 400 "$t/pw.age" {out}.new && mv -f {out}.new {out}; '
        f'install -o root -g root -m 400 "$t/key" {d}/secrets/root_ca_key.new && '
        f"mv -f {d}/secrets/root_ca_key.new {d}/secrets/root_ca_key"
    )


def ledger_command(s: Settings) -> str:
    """Create the CA's empty ledger where it is missing (tasks/crl.py fills it)."""
    ledger = shlex.quote(s.ledger)
    return f"[ -e {ledger} ] || install -m 644 -o root -g root /dev/null {ledger}"


def init_command(plan: ClusterPlan, s: Settings) -> str:
    """`step ca init`, non-interactive, with every name and IP clients use for the CA.

    Fragments of an interrupted init (keys but no ca.json: that CA never served) are
    moved aside, not deleted.
    """
    d = s.ca_dir
    dns = " ".join(f"--dns={shlex.quote(n)}" for n in plan.ca_sans)
    return (
        f"set -e; cd {d}; leftovers=$(ls -d {' '.join(INIT_OUTPUTS)} 2>/dev/null || true); "
        'if [ -n "$leftovers" ]; then aside=.interrupted-init-$(date +%s); '
        "mkdir -m 700 $aside; mv $leftovers $aside/; fi; "
        f"STEPPATH={d} {s.bin_dir}/step ca init --deployment-type=standalone "
        f"--name={shlex.quote(s.ca_name)} {dns} --address=:{s.ca_port} "
        f"--provisioner={shlex.quote(s.ca_provisioner)} --with-ca-url={plan.ca_url} "
        f"--password-file={d}/secrets/password "
        f"--provisioner-password-file={d}/secrets/provisioner_password; "
        + claims_command(s)
        + f"; {ledger_command(s)}; {crl_config_command(s)}"
    )


# A deliberate restart must not count towards the unit's crash-loop limit
# (StartLimitBurst): a few in a row would leave the CA stopped.
RESTART = "systemctl reset-failed step-ca.service 2>/dev/null; systemctl restart step-ca.service"


def set_crl_command(ca_json: str, block: dict[str, object]) -> str:
    """awk that writes ca.json with its top-level `crl` object replaced by ``block`` (or
    ``block`` added as the first key) to "$tmp"; the caller checks and renames it. Exits
    3 when ca.json is not laid out as step writes it."""
    lines = json.dumps(block, indent="\t").splitlines()
    text = [f'\t"crl": {lines[0]}', *(f"\t{line}" for line in lines[1:-1]), f"\t{lines[-1]},"]
    inserted = "\\n".join(text).replace("\t", "\\t").replace('"', '\\"')
    comma = ",[ \\t]*$"
    program = (
        # The first line opens the object; the new block follows it.
        f"NR == 1 {{ if ($0 !~ /^\\{{[ \\t]*$/) exit 3; print; "
        f'printf "%s\\n", "{inserted}"; next }} '
        # An old top-level crl block (on one line or several) is dropped ...
        f"skip {{ if ($0 ~ /{BLOCK_END}/) {{ skip = 0; if ($0 !~ /{comma}/) trim = 1 }} next }} "
        f"/{CRL_START}/ {{ if ($0 ~ /{CLOSES_ON_LINE}/) {{ if ($0 !~ /{comma}/) trim = 1 }} "
        "else skip = 1; next } "
        # ... and when it was the last key, the key before it loses its comma.
        f'{{ if (have) {{ if (trim) sub(/{comma}/, "", held); print held }} '
        "trim = 0; held = $0; have = 1 } "
        "END { if (skip) exit 3; "
        f'if (have) {{ if (trim) sub(/{comma}/, "", held); print held }} }}'
    )
    return f'awk {shlex.quote(program)} {shlex.quote(ca_json)} > "$tmp"'


def set_dns_names_command(ca_json: str, names: Sequence[str]) -> str:
    """Replace the first (top-level) `dnsNames` array of ca.json with ``names``.

    ca.json stays on the node: awk rewrites it into a temporary file with the same
    owner and mode, which is renamed into place. Exit 3 (file untouched) when no
    `dnsNames` array is found. ``names`` are validated DNS names and IPs (no quotes).
    """
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9.:*-]+", name):
            raise ValueError(f"not a DNS name or IP: {name!r}")
    f = shlex.quote(ca_json)
    program = (
        "function emit(pre, indent, tail, multi,  i, n, parts) {"
        ' n = split(names, parts, " "); printf "%s\\"dnsNames\\": [", pre;'
        " for (i = 1; i <= n; i++) {"
        '  if (multi) printf "\\n%s\\t", indent; else if (i > 1) printf " ";'
        '  printf "\\"%s\\"%s", parts[i], (i < n ? "," : "") }'
        ' if (multi) printf "\\n%s", indent; print "]" tail }'
        ' skipping { e = index($0, "]"); if (e) { emit(pre, indent, substr($0, e + 1), 1);'
        " skipping = 0 } next }"
        ' !done && match($0, /"dnsNames"[ \\t]*:[ \\t]*\\[/) {'
        " done = 1; pre = substr($0, 1, RSTART - 1); rest = substr($0, RSTART + RLENGTH);"
        " match(pre, /^[ \\t]*/); indent = substr(pre, 1, RLENGTH);"
        ' e = index(rest, "]"); if (e) { emit(pre, indent, substr(rest, e + 1), 0); next }'
        " skipping = 1; next }"
        " { print }"
        " END { if (!done || skipping) exit 3 }"
    )
    return (
        f"set -e; tmp=$(mktemp {f}.XXXXXX); trap 'rm -f \"$tmp\"' EXIT; "
        f'awk -v names={shlex.quote(" ".join(names))} {shlex.quote(program)} {f} > "$tmp"; '
        f'chown --reference={f} "$tmp"; chmod --reference={f} "$tmp"; mv -f "$tmp" {f}; '
        "trap - EXIT"
    )


def set_ca_url_command(defaults_json: str, url: str) -> str:
    """Point `ca-url` in step's defaults.json at ``url`` (same owner and mode)."""
    if not re.fullmatch(r"https://[A-Za-z0-9.:\[\]-]+", url):
        raise ValueError(f"unexpected CA URL {url!r}")
    f = shlex.quote(defaults_json)
    expr = f's|^\\([ \\t]*"ca-url"[ \\t]*:[ \\t]*"\\)[^"]*\\("\\)|\\1{url}\\2|'
    return (
        f"set -e; grep -q '\"ca-url\"' {f}; tmp=$(mktemp {f}.XXXXXX); "
        "trap 'rm -f \"$tmp\"' EXIT; "
        f'sed {shlex.quote(expr)} {f} > "$tmp"; '
        f'chown --reference={f} "$tmp"; chmod --reference={f} "$tmp"; mv -f "$tmp" {f}; '
        "trap - EXIT"
    )
