"""Commands that run on the CA node with the provisioner's key: one-time tokens for
issuance, and revocation by serial. Pure shell builders (no pyinfra import); the unit
tests run them against a fake `step`.

The provisioner password never leaves the CA node and its decrypted key never reaches a
file, an argument or the output; tokens reach `step` in its environment (STEP_TOKEN),
never on a command line (/proc/PID/cmdline is readable by every local user).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from ..crl import Revocation
from ..plan import CertSpec
from ..settings import Settings
from .shell import on_exit


def provisioner_key_lookup(ca_json: str, provisioner: str) -> str:
    """Shell that sets ``$1`` to the provisioner's kid and ``$2`` to its encrypted key,
    found in ``ca_json`` by the provisioner's name (`step ca init` writes the name, then
    the key with its kid, then encryptedKey); both empty when not found."""
    program = (
        'index($0, "\\"name\\": \\"" n "\\"") { p = 1 } '
        'p && /"(kid|encryptedKey)":/ { split($0, f, "\\""); print f[4]; '
        'if (f[2] == "encryptedKey") exit }'
    )
    return f"set -- $(awk -v n={shlex.quote(provisioner)} {shlex.quote(program)} {ca_json})"


def provisioner_preamble(ca: Settings, ca_url: str) -> list[str]:
    """Shell lines for the CA node that define `mint ARGS...` (a `step ca token ARGS`
    signed by our provisioner) and `$e`, a private temp dir removed on exit.

    The provisioner key is decrypted once into a shell variable and handed to each
    `step ca token` on stdin: it is never written to a file, an argument or the output.
    When that fails (a ca.json laid out otherwise), each token is minted with the
    password file instead, which is only slower.
    """
    step, password = f"{ca.bin_dir}/step", f"{ca.ca_dir}/secrets/provisioner_password"
    common = f"--provisioner {shlex.quote(ca.ca_provisioner)} --ca-url {ca_url} --root {ca.ca_root}"
    return [
        "umask 077; e=$(mktemp -d); " + on_exit('rm -rf "$e"'),
        provisioner_key_lookup(ca.ca_json, ca.ca_provisioner),
        f'key=$(printf %s "$2" | {step} crypto jwe decrypt --password-file {password} '
        "2>/dev/null) || key=",
        # the decrypted key must be the provisioner's (kid), else the slow way
        """case $key in *'"kid":"'"$1"'"'*) ;; *) key= ;; esac""",
        'mint() { if [ -n "$key" ]; then printf %s "$key" | '
        f'STEPPATH={ca.ca_dir} {step} ca token "$@" --key /dev/stdin {common}; '
        f'else STEPPATH={ca.ca_dir} {step} ca token "$@" '
        f"--provisioner-password-file {password} {common}; fi; }}",
    ]


def mint_command(ca: Settings, ca_url: str, certs: Sequence[CertSpec]) -> str:
    """One command on the CA (settings ``ca``) that prints ``token <i> <jwt>`` or
    ``error <i> <why>`` for each of ``certs`` (see `provisioner_preamble`). As many
    tokens are minted at once as the CA node has CPUs.
    """
    lines = [
        *provisioner_preamble(ca, ca_url),
        # One token's line (a single short write: lines of parallel jobs stay whole).
        'one() { i=$1; shift; if t=$(mint "$@" 2>"$e/$i"); then echo "token $i $t"; '
        """else echo "error $i $(tr '\\n' ' ' < "$e/$i" | tail -c 300)"; fi; }""",
        "cpus=$(nproc 2>/dev/null || echo 1)",
    ]
    for i, cert in enumerate(certs):
        sans = (f"--san {shlex.quote(n)}" for n in cert.sans)
        args = " ".join([shlex.quote(cert.subject), *sans])
        lines.append(f"one {i} {args} & [ $(({i + 1} % cpus)) -ne 0 ] || wait")
    return "; ".join([*lines, "wait"])


def revoke_command(ca: Settings, ca_url: str, revocations: Sequence[Revocation]) -> str:
    """One command on the CA that revokes each serial of ``revocations`` at step-ca with
    a one-time token minted there (the certificate and its key are not needed) and
    records it in the ledger. Prints ``revoked <serial>``, ``already <serial>`` (step-ca
    had it revoked before) or ``error <serial> <why>`` for each.

    The token reaches `step ca revoke` in its environment (STEP_TOKEN), never on a
    command line.
    """
    step, ledger = f"{ca.bin_dir}/step", shlex.quote(ca.ledger)
    lines = [
        *provisioner_preamble(ca, ca_url),
        "rev() { s=$1; subject=$2; after=$3; reason=$4; "
        'if ! t=$(mint "$s" --revoke 2>"$e/err"); then '
        """echo "error $s $(tr '\\n' ' ' < "$e/err" | tail -c 300)"; return; fi; """
        f'if out=$(STEP_TOKEN="$t" STEPPATH={ca.ca_dir} {step} ca revoke "$s" '
        f'--reason "$reason" --ca-url {ca_url} --root {ca.ca_root} 2>&1 </dev/null); then '
        "r=revoked; else case $out in *'already revoked'*) r=already ;; "
        """*) echo "error $s $(printf %s "$out" | tr '\\n' ' ' | tail -c 300)"; return ;; """
        "esac; fi; "
        "printf 'revoked\\t%s\\t%s\\t%s\\t%s\\t%s\\n' "
        '"$s" "$subject" "$after" "$reason" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" '
        f'| flock {ledger} tee -a {ledger} >/dev/null; echo "$r $s"; }}',
    ]
    for r in revocations:
        after = r.not_after.strftime("%Y-%m-%dT%H:%M:%SZ") if r.not_after else "-"
        lines.append(
            "rev "
            + " ".join(shlex.quote(v) for v in (str(r.serial), r.subject or "-", after, r.reason))
        )
    return "; ".join(lines)
