"""The CA's rotation on the active cert-manager: a new intermediate signed by the root,
or a new root and intermediate made beside the CA and switched to in phases
(etcd_pki/rotation.py says which, tasks/rotation.py runs them).

Every key is made on the CA node and encrypted there: an intermediate key with the CA's
password (step-ca reads it), a root key with its own random password, stored only
age-encrypted to `backup_recipients` (or, without recipients, with the CA's password,
as `step ca init` does). A key and its certificate are put in place by two renames,
the certificate staged first: a run stopped between them is finished by the next one
(`finish_ca_swap`), never left with a pair that does not match.
"""

from __future__ import annotations

import json
import shlex

from ..settings import Settings
from .shell import on_exit

NEXT = "rotation"  # below ca_dir: the next root and intermediate, and the phase
STATE = f"{NEXT}/state"  # the root rotation's phase (etcd_pki/rotation.py: PHASES)
# Public certificates of what was replaced, kept for the record (never keys).
RETIRED = "retired"


def _template(name: str, kind: str, path_len: int) -> str:
    """A certificate template like `step ca init`'s: O and CN, CA key usages."""
    subject = {"organization": name, "commonName": f"{name} {kind} CA"}
    return json.dumps(
        {
            "subject": subject,
            **({"issuer": subject} if kind == "Root" else {}),
            "keyUsage": ["certSign", "crlSign"],
            "basicConstraints": {"isCA": True, "maxPathLen": path_len},
        }
    )


def _create(
    s: Settings, kind: str, crt: str, key: str, password: str, signer: tuple[str, str, str] | None
) -> str:
    """`step certificate create` of a root (``signer`` None) or an intermediate signed by
    ``signer`` = (certificate, key, its password file); the key encrypted with the file
    ``password``. Arguments are shell words. The template (like `step ca init`'s) stands
    for step's root-ca and intermediate-ca profiles, which it cannot be combined with."""
    lifetime = s.ca_root_lifetime if kind == "Root" else s.ca_intermediate_lifetime
    template = shlex.quote(_template(s.ca_name, kind, 1 if kind == "Root" else 0))
    sign = (
        f"--ca {signer[0]} --ca-key {signer[1]} --ca-password-file {signer[2]} " if signer else ""
    )
    return (
        f'printf %s {template} > "$t/{kind}.tpl" && '
        f"{s.bin_dir}/step certificate create {shlex.quote(f'{s.ca_name} {kind} CA')} {crt} {key} "
        f'--template "$t/{kind}.tpl" {sign}--password-file {password} '
        f"--not-after {lifetime} --kty EC --curve P-256 --force >/dev/null"
    )


def _matches(s: Settings, crt: str, key: str, password: str) -> str:
    """Shell test: the certificate ``crt`` belongs to the encrypted ``key``."""
    step = f"{s.bin_dir}/step"
    return (
        f'[ "$({step} certificate key {crt} 2>/dev/null)" = '
        f'"$({step} crypto key public {key} --password-file {password} 2>/dev/null)" ]'
    )


def finish_ca_swap(s: Settings) -> str:
    """Finish the intermediate's swap a stopped run left: a staged certificate that
    belongs to the key in place follows it; staged files of a swap that did not start
    go (the run starts again)."""
    crt, key = "certs/intermediate_ca.crt", "secrets/intermediate_ca_key"
    return (
        f"if [ -f {crt}.new ]; then if {_matches(s, f'{crt}.new', key, 'secrets/password')}; "
        f"then mv -f {crt}.new {crt}; else rm -f {crt}.new; fi; fi; rm -f {key}.new"
    )


def _root_password(s: Settings) -> str:
    """Shell that sets $rootpw to a file holding the root key's password: decrypted from
    its age file with the identity on stdin when it has its own, else the CA's."""
    return (
        "if [ -f secrets/root_ca_key.password.age ]; then "
        'cat > "$t/identity"; [ -s "$t/identity" ] || { echo "the root key has its own '
        'password: rotate_identity_file is needed" >&2; exit 3; }; '
        'age -d -i "$t/identity" -o "$t/rootpw" secrets/root_ca_key.password.age; '
        'rm -f "$t/identity"; rootpw="$t/rootpw"; else rootpw=secrets/password; fi'
    )


def new_intermediate_command(s: Settings) -> str:
    """Make a new intermediate signed by the root on the CA node and put it in place
    (the old certificate kept in `retired/`, the old key gone); prints the new
    certificate. Reads an age identity on stdin when the root key has its own password.
    step-ca is reloaded by the caller."""
    d, u = shlex.quote(s.ca_dir), shlex.quote(s.ca_user)
    crt, key = "certs/intermediate_ca.crt", "secrets/intermediate_ca_key"
    return (
        f"set -e; umask 077; cd {d}; t=$(mktemp -d /run/etcd-pki-rotate.XXXXXX); "
        + on_exit('rm -rf "$t"')
        + f"; {finish_ca_swap(s)}; {_root_password(s)}; "
        + _create(
            s,
            "Intermediate",
            '"$t/i.crt"',
            '"$t/i.key"',
            "secrets/password",
            ("certs/root_ca.crt", "secrets/root_ca_key", '"$rootpw"'),
        )  # fmt: skip
        + f"; mkdir -p -m 755 {RETIRED}; "
        f"install -m 644 {crt} {RETIRED}/intermediate_ca.$(date -u +%Y%m%dT%H%M%SZ).crt; "
        f'install -o root -g root -m 644 "$t/i.crt" {crt}.new; '
        f'install -o {u} -g {u} -m 400 "$t/i.key" {key}.new; '
        f"mv -f {key}.new {key}; mv -f {crt}.new {crt}; install -d -o root -g {u} -m 750 {NEXT}; "
        + _write_state(f'"intermediate switched {_fingerprint_of(crt)}"')
        + f"; cat {crt}"
    )


def serves_intermediate_command(s: Settings, fingerprint: str, reload: bool = True) -> str:
    """Reload step-ca (SIGHUP: it reads its keys and certificates again, and makes a new
    CRL), then wait until it serves the intermediate of SHA-256 ``fingerprint`` (hex; a
    shell word, quoted by the caller)."""
    url = shlex.quote(f"https://127.0.0.1:{s.ca_port}/intermediates.pem")
    root = shlex.quote(s.ca_root)
    fetch = (
        f"if command -v curl >/dev/null; then curl -fsS --max-time 5 --cacert {root} {url}; "
        f"else wget -q -T 5 --ca-certificate={root} -O- {url}; fi 2>/dev/null"
    )
    served = (
        f"$({fetch} | openssl x509 -noout -fingerprint -sha256 2>/dev/null "
        "| sed 's/.*=//; s/://g' | tr A-F a-f)"
    )
    return (
        ("systemctl reload step-ca.service; " if reload else "")
        + f'for i in $(seq 1 60); do [ "{served}" = {fingerprint} ] && exit 0; '
        "sleep 0.5; done; echo 'step-ca does not serve the new intermediate after 30 s' >&2; "
        "exit 1"
    )


def _fingerprint_of(crt: str) -> str:
    """Shell: the SHA-256 fingerprint of certificate ``crt`` in lowercase hex."""
    return (
        f"$(openssl x509 -in {crt} -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' "
        "| tr A-F a-f)"
    )


def _write_state(line: str) -> str:
    """Record ``line`` (a shell word) as the rotation's state, atomically."""
    return (
        f"printf '%s\\n' {line} > {STATE}.new && chmod 644 {STATE}.new && mv -f {STATE}.new {STATE}"
    )


def prepare_root_command(s: Settings) -> str:
    """Make the next root and its intermediate in ca_dir/rotation/ (nothing in use
    changes) and record `root prepared FINGERPRINT`; prints the state and the next root.
    A prepared rotation is not made again. The new root key gets its own random password,
    age-encrypted to `backup_recipients` (the CA's password without recipients)."""
    d, u = shlex.quote(s.ca_dir), shlex.quote(s.ca_user)
    recipients = " ".join(f"-r {shlex.quote(r)}" for r in s.backup_recipients)
    if s.backup_recipients:
        password = (
            'head -c 32 /dev/urandom | base64 -w0 > "$t/rootpw"; '
            f'age -a {recipients} -o "$t/pw.age" "$t/rootpw"; rootpw="$t/rootpw"'
        )
        keep_password = (
            f'install -o root -g root -m 400 "$t/pw.age" {NEXT}/root_ca_key.password.age'
        )
    else:
        password = "rootpw=secrets/password"
        keep_password = f"rm -f {NEXT}/root_ca_key.password.age"
    root = ('"$t/r.crt"', '"$t/r.key"', '"$rootpw"')
    return "; ".join(
        [
            f"set -e; umask 077; cd {d}",
            # An unfinished root rotation is resumed, not made again.
            f"if grep -q '^root \\(prepared\\|trusted\\|switched\\) ' {STATE} 2>/dev/null; "
            f"then cat {STATE} {NEXT}/root_ca.crt; exit 0; fi",
            "t=$(mktemp -d /run/etcd-pki-rotate.XXXXXX)",
            on_exit('rm -rf "$t"'),
            f"install -d -o root -g {u} -m 750 {NEXT}",
            password,
            _create(s, "Root", root[0], root[1], root[2], None),
            _create(s, "Intermediate", '"$t/i.crt"', '"$t/i.key"', "secrets/password", root),
            f'install -o root -g root -m 644 "$t/r.crt" {NEXT}/root_ca.crt',
            f'install -o root -g root -m 400 "$t/r.key" {NEXT}/root_ca_key',
            f'install -o root -g root -m 644 "$t/i.crt" {NEXT}/intermediate_ca.crt',
            f'install -o {u} -g {u} -m 400 "$t/i.key" {NEXT}/intermediate_ca_key',
            keep_password,
            _write_state(f'"root prepared {_fingerprint_of(NEXT + "/root_ca.crt")}"'),
            f"cat {STATE} {NEXT}/root_ca.crt",
        ]
    )


def mark_command(s: Settings, line: str) -> str:
    """Record the rotation's state ``line`` (`KIND PHASE FINGERPRINT`) on the CA node."""
    return f"set -e; cd {shlex.quote(s.ca_dir)}; " + _write_state(shlex.quote(line))


def _expect(states: str, fp: str, phase: str) -> str:
    """Shell: go on when the state is one of ``states`` (case patterns) of root ``fp``;
    stop with a message otherwise."""
    return (
        f'case "$(cat {STATE})" in {states}) ;; '
        f"*) echo 'the root rotation is not at the phase {phase}' >&2; exit 1 ;; esac"
    ).replace("FP", fp)


def switch_root_command(s: Settings, fingerprint: str) -> str:
    """Put the next root and intermediate (ca_dir/rotation/) in place of the current
    ones (their certificates kept in retired/), point the CA's own defaults.json at the
    new root, reload step-ca and wait until it serves the new intermediate, then record
    `root switched`. A switch stopped half-way is done again from the same files."""
    d, u = shlex.quote(s.ca_dir), shlex.quote(s.ca_user)
    fp = shlex.quote(fingerprint)
    pairs = [
        (f"{NEXT}/root_ca.crt", "certs/root_ca.crt", "root", "644"),
        (f"{NEXT}/intermediate_ca.crt", "certs/intermediate_ca.crt", "root", "644"),
        (f"{NEXT}/root_ca_key", "secrets/root_ca_key", "root", "400"),
        (f"{NEXT}/intermediate_ca_key", "secrets/intermediate_ca_key", u, "400"),
    ]
    password = f"{NEXT}/root_ca_key.password.age"
    return "; ".join(
        [
            f"set -e; umask 077; cd {d}",
            f'if grep -qx "root \\(switched\\|done\\) "{fp} {STATE}; then echo switched; '
            "exit 0; fi",
            _expect('"root trusted "FP', fp, "trusted"),
            f"mkdir -p -m 755 {RETIRED}; stamp=$(date -u +%Y%m%dT%H%M%SZ)",
            # The old root stays at hand (public) until no host trusts it: the audit
            # checks that every host trusts both meanwhile.
            f'if [ "{_fingerprint_of("certs/root_ca.crt")}" != {fp} ]; then '
            f"install -m 644 certs/root_ca.crt {RETIRED}/root_ca.$stamp.crt; "
            f"install -m 644 certs/intermediate_ca.crt {RETIRED}/intermediate_ca.$stamp.crt; "
            f"install -m 644 certs/root_ca.crt {NEXT}/previous_root_ca.crt; fi",
            *(f"install -o {o} -g {o} -m {m} {src} {dst}.new" for src, dst, o, m in pairs),
            f"if [ -f {password} ]; then install -o root -g root -m 400 {password} "
            "secrets/root_ca_key.password.age; else rm -f secrets/root_ca_key.password.age; fi",
            *(f"mv -f {dst}.new {dst}" for _, dst, _, _ in pairs),
            # The CA's own step configuration names the root by fingerprint.
            f"sed -i 's/\\(\"fingerprint\"[ \\t]*:[ \\t]*\"\\)[0-9a-f]*/\\1'{fp}'/' "
            "config/defaults.json",
            f"new={_fingerprint_of('certs/intermediate_ca.crt')}",
            "( " + serves_intermediate_command(s, '"$new"') + " )",
            _write_state(f'"root switched "{fp}'),
            "echo switched",
        ]
    )


def finish_root_command(s: Settings, fingerprint: str) -> str:
    """Once no host trusts the old root: the next-root files go (they are in place),
    and `root done` is recorded."""
    fp = shlex.quote(fingerprint)
    return "; ".join(
        [
            f"set -e; cd {shlex.quote(s.ca_dir)}",
            _expect('"root switched "FP|"root done "FP', fp, "switched"),
            f"rm -f {NEXT}/root_ca.crt {NEXT}/intermediate_ca.crt {NEXT}/root_ca_key "
            f"{NEXT}/intermediate_ca_key {NEXT}/root_ca_key.password.age "
            f"{NEXT}/previous_root_ca.crt",
            _write_state(f'"root done "{fp}'),
        ]
    )
