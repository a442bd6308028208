"""Leaf certificates: the key is made on the host that uses it, the CA signs it.

The provisioner password never leaves the CA node: the CA mints a one-time token
bound to exactly this subject and these SANs; the host redeems it.
"""

from __future__ import annotations

import shlex

import gevent.lock
from pyinfra import host
from pyinfra.api import StringCommand, deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import files, server

from etcd_pki.certs import CertOnHost, permission_problems, reissue_reason
from etcd_pki.plan import CertSpec, ClusterPlan, HostPlan
from facts.pki import CertStates, StepVersions
from facts.snapshot import Want
from tasks.common import (
    ca_root_pem,
    call,
    fact_before_run,
    fact_want,
    get_plan,
    pyinfra_host,
    reads,
    snapshot,
    this_host,
)

KEY_FLAGS = {
    "EC": "--kty EC --curve P-256",
    "RSA": "--kty RSA --size 2048",
    "OKP": "--kty OKP --curve Ed25519",
}
# Every host mints its tokens on the CA at the same time. Over SSH they share the CA's
# one connection, and sshd refuses more than MaxSessions (10) channels at once: with
# more than ~10 hosts issuing, minting failed ("ChannelException: Connect failed").
# Minting is CPU-bound on the CA anyway (`step ca token` decrypts the provisioner key).
MINT_AT_ONCE = 4
_minting = gevent.lock.BoundedSemaphore(MINT_AT_ONCE)
_connecting = gevent.lock.BoundedSemaphore(1)


def mint_token(plan: ClusterPlan, cert: CertSpec) -> str:
    """A one-time token for ``cert`` minted on the CA node; kept in memory only."""
    ca = plan.ca.settings
    sans = " ".join(f"--san {shlex.quote(n)}" for n in cert.sans)
    command = (
        f"STEPPATH={ca.ca_dir} {ca.bin_dir}/step ca token {shlex.quote(cert.subject)} {sans} "
        f"--provisioner {shlex.quote(ca.ca_provisioner)} "
        f"--provisioner-password-file {ca.ca_dir}/secrets/provisioner_password "
        f"--ca-url {plan.ca_url} --root {ca.ca_dir}/certs/root_ca.crt"
    )
    ca_host = pyinfra_host(plan.active_ca)
    with _connecting:
        if not ca_host.connected:
            ca_host.connect(reason="to mint a certificate token", raise_exceptions=True)
    with _minting:
        ok, output = ca_host.run_shell_command(StringCommand(command), print_output=False)
    token = output.stdout.strip()
    if not ok or not token or "\n" in token:
        raise PyinfraError(
            f"could not mint a token for {cert.name} on {plan.active_ca}: "
            f"{output.stderr.strip()[-300:]}"
        )
    return token


def issue_command(me: HostPlan, cert: CertSpec, ca_url: str) -> str:
    """Redeem the token from stdin; write to a temp dir, then rename into place.

    A failed earlier run of the certificate's renewal service is moot once it is
    re-issued: its failed state is cleared (the audit warns about it until then).
    """
    s = me.settings
    return (
        f"set -e; umask 077; tmp=$(mktemp -d {s.ssl_dir}/.issue-XXXXXX); "
        "trap 'rm -rf \"$tmp\"' EXIT; read -r token; "
        f"STEPPATH={s.step_dir} {s.bin_dir}/step ca certificate {shlex.quote(cert.subject)} "
        f'"$tmp/crt" "$tmp/key" --token "$token" --not-after {s.cert_lifetime} '
        f"{KEY_FLAGS[s.key_type]} --ca-url {ca_url} --root {s.ssl_dir}/root_ca.crt --force "
        ">/dev/null; "
        f'chown {cert.owner}: "$tmp/key"; chmod 400 "$tmp/key"; chmod 644 "$tmp/crt"; '
        f'mv -f "$tmp/key" {cert.key}; mv -f "$tmp/crt" {cert.crt}; '
        f"systemctl reset-failed {cert.unit}.service >/dev/null 2>&1 || true"
    )


def _interrupted(me: HostPlan) -> tuple[str, str]:
    # A host that died during an issuance keeps the temp dir with the new key in it (the
    # shell's trap never ran); only this task writes .issue-* directories.
    return (me.settings.ssl_dir, ".issue-*")


@reads
def _reads(me: HostPlan) -> Want:
    if not me.certs:
        return Want()
    step = f"{me.settings.bin_dir}/step"
    return Want.of(finds={_interrupted(me)}) | fact_want(CertStates, certs=me.certs, step=step)


@deploy("Issue certificates")
def issue_certificates() -> None:
    """Issue this host's peer/server/client certificates when missing or no longer right.

    Re-issued only when missing, not matching its key, not from this CA, with SANs
    other than the inventory implies, past the renewal threshold, or expired.

    .. code:: python

        issue_certificates()
    """
    plan = get_plan()
    me = this_host()
    if not me.certs:
        return
    s = me.settings
    stale = snapshot(_reads(me)).found_dirs[_interrupted(me)]
    for path in stale:
        files.directory(
            name=f"Remove {path} (left by an interrupted issuance)", path=path, present=False
        )
    todo: dict[str, list] = {}

    step = f"{s.bin_dir}/step"
    # Read with the host's snapshot when the pinned `step` was there before the run (it
    # computes each key's public half); otherwise once install_step has run.
    step_ready = fact_before_run(StepVersions, bin_dir=s.bin_dir).get("step") == s.step_version

    def check() -> bool:
        found: dict[str, CertOnHost] = (
            fact_before_run(CertStates, certs=me.certs, step=step)
            if step_ready
            else host.get_fact(CertStates, certs=me.certs, step=step)
        )
        if set(found) != {c.name for c in me.certs}:
            # Every section is printed even for missing files: an incomplete answer is a
            # failed read, which must not be mistaken for "missing" and re-issued.
            raise PyinfraError(f"could not read the certificates on {me.name}; nothing re-issued")
        root = ca_root_pem()
        todo["issue"], todo["fix"] = [], []
        for cert in me.certs:
            reason = reissue_reason(found.get(cert.name), cert, root, s.renew_threshold_percent)
            if reason:
                todo["issue"].append((cert, reason))
            elif permission_problems(found[cert.name], cert):
                todo["fix"].append(cert)
        return bool(todo["issue"] or todo["fix"])

    def apply() -> None:
        for cert, reason in todo["issue"]:
            server.shell(
                name=f"Issue {cert.name} ({reason})",
                commands=[issue_command(me, cert, plan.ca_url)],
                _stdin=mint_token(plan, cert),
            )
        for cert in todo["fix"]:
            files.file(name=f"Mode of {cert.crt}", path=cert.crt, mode="644")
            files.file(name=f"Owner/mode of {cert.key}", path=cert.key, user=cert.owner, mode="400")

    call(
        f"Issue or repair certificates ({', '.join(c.kind for c in me.certs)})",
        apply,
        check=check,
    )
