"""Standby cert-managers: an identical copy of the active CA's material on each, the
refusal to create a second CA on a failover target without it, and the retirement of
a CA from a host that is no longer a cert-manager. Why age (not gpg): see
etcd_pki/redundancy.py.

Only ciphertext and hashes cross the controller, and only in memory: the standby makes
an age key pair for one transfer (in /run, a tmpfs), the controller reads its public
key, the active CA encrypts a tar of the material to it, the controller hands the
ciphertext to the standby on stdin, the standby decrypts and installs it with the same
owners and modes as the active (CA_FILES), then deletes the key. Every remote command
here runs with its output hidden; the operations that carry them have explicit names.
"""

from __future__ import annotations

import contextlib
import shlex

from pyinfra import host, logger
from pyinfra.api import Host, deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import server

from etcd_pki.certs import fingerprint
from etcd_pki.commands.backup import (
    NODE_TMP,
    digest_command,
    encrypt_command,
    install_material_script,
    one_time_key_command,
    receive_material_command,
    retire_command,
)
from etcd_pki.plan import ClusterPlan, HostPlan
from etcd_pki.redundancy import (
    AGE_RECIPIENT_RE,
    ARMOR_BEGIN,
    ARMOR_END,
    parse_digests,
    parse_retired_roots,
)
from etcd_pki.settings import Settings
from facts.pki import PublicFile
from facts.snapshot import Snapshot, Want
from tasks.ca import CA_DIRS, CA_FILES, ca_permissions, ca_snapshot
from tasks.common import account_ops, call, pyinfra_host, run_on
from tasks.ops import Op, emit, shell
from tasks.run import get_plan, snapshot, snapshots_of, this_host

AGE_PACKAGE = "age"
MATERIAL = tuple(path for path, *_ in CA_FILES)
# Backups made before these existed lack them; a restore keeps the node's own then, and
# a CA whose root key has no password of its own has no .age for it.
OPTIONAL_MATERIAL = (
    "ledger.tsv",
    "secrets/root_ca_key.password.age",
    *(path for path, *_ in CA_FILES if path.startswith("rotation/")),
)
# A rotation's files come and go: a standby holds exactly what the active holds.
MIRRORED = tuple(path for path in OPTIONAL_MATERIAL if path.startswith("rotation/"))
CA_SERVICE = "step-ca.service"


def reads(me: HostPlan) -> Want:
    # Whether the host holds a CA: the active (a CA-less failover target), or a host
    # that is no longer a cert-manager (material to retire); age on cert-managers.
    s = me.settings
    return Want.of(stat={s.ca_json}, packages={AGE_PACKAGE} if me.is_cert_manager else ())


def _holds_ca(me: HostPlan) -> bool:
    """`config/ca.json` was on this host before the run."""
    return snapshot(reads(me)).is_file(me.settings.ca_json)


def _real(value: str, s: Settings) -> str:
    return s.ca_user if value == "CA" else value


def material_install_script(s: Settings) -> str:
    """Shell that installs extracted material (in "$t/m") with CA_FILES' owners and modes."""
    files = [(p, _real(o, s), _real(g, s), m) for p, o, g, m in CA_FILES]
    dirs = [(p, _real(o, s), _real(g, s), m) for p, o, g, m in CA_DIRS]
    return install_material_script(
        s.ca_dir, files, dirs, optional=OPTIONAL_MATERIAL, mirrored=MIRRORED
    )


def _digests(h: Host, s: Settings) -> tuple[str, str, frozenset[str]]:
    """(material, root, roots retired by a rotation), as sha256 hex."""
    out = run_on(h, digest_command(s.ca_dir, MATERIAL), "hashing the CA material")
    return (*parse_digests(out), parse_retired_roots(out))


@deploy("Install age")
def install_age() -> None:
    """Install Debian's `age` (cert-managers: encryption of the CA material).

    .. code:: python

        install_age()
    """
    if snapshot(Want.of(packages={AGE_PACKAGE})).has_package(AGE_PACKAGE):
        return
    server.shell(
        name=f"Install {AGE_PACKAGE} (encrypts the CA material for standbys and backups)",
        commands=[
            f"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {AGE_PACKAGE} >/dev/null "
            "2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
            f"apt-get install -y -qq {AGE_PACKAGE}; }}"
        ],
    )


def check_ca_material() -> None:
    """Refuse, before anything runs, to create a new CA where the cluster has one.

    The active cert-manager without `config/ca.json` is either a brand-new cluster
    (``step ca init`` follows) or a failover to a host that never received the
    material; in the second case some host already trusts a root: stop there.
    """
    plan = get_plan()
    me = this_host()
    if not me.is_active_ca or _holds_ca(me):
        return
    roots: dict[str, list[str]] = {}
    # Every host's snapshot (read anyway) has its root_ca.crt: see tasks/bootstrap.py.
    paths = {name: h.settings.trusted_root for name, h in plan.hosts.items() if h.certs}
    found = snapshots_of({name: Want.of(contents={path}) for name, path in paths.items()})
    for name, snap in found.items():
        pem = snap.contents.get(paths[name])
        if pem:
            try:
                roots.setdefault(fingerprint(pem), []).append(name)
            except ValueError:
                roots.setdefault("unreadable", []).append(name)
    if not roots:
        return
    trusted = "; ".join(f"root {fp} on {', '.join(names)}" for fp, names in roots.items())
    raise PyinfraError(
        f"{me.name} is the active cert-manager but has no CA material "
        f"({me.settings.ca_json}), while the cluster already trusts a CA "
        f"({trusted}). Refusing to create a second CA. Fail over only to a standby that "
        f"received the material (group etcd_cert_managers, synced by an earlier deploy), or "
        f"restore a backup onto {me.name} first: pyinfra INVENTORY restore.py "
        "--data restore_from=BACKUP --data restore_identity_file=KEYFILE"
    )


@deploy("Retire CA material")
def retire_ca_material() -> None:
    """Retire the CA of a host that is no longer a cert-manager: its directory is moved
    aside (`ca_dir.retired-TIMESTAMP`, with its database) without its keys and
    passwords (CA keys belong on cert-managers only). Only a copy of the active CA is
    retired: a host holding a different CA is refused and left as it is, since that
    material may be the only copy.

    .. code:: python

        retire_ca_material()
    """
    plan, me = get_plan(), this_host()
    if not _holds_ca(me):
        return
    mine = host.get_fact(PublicFile, path=me.settings.ca_root)
    active = pyinfra_host(plan.active_ca).get_fact(PublicFile, path=plan.ca.settings.ca_root)
    emit(decide_retire(me, plan, mine, active))


def decide_retire(
    me: HostPlan, plan: ClusterPlan, mine: str | None, active: str | None
) -> list[Op]:
    """The operations that retire the CA on ``me`` (not a cert-manager, holding a CA
    whose root is ``mine``) when it is a copy of the active CA's (root ``active``)."""
    s = me.settings
    if not active:
        # Nothing to compare with (a new CA, or a failover target without material,
        # which check_ca_material refuses): leave this host's copy alone for now.
        return []
    try:
        same = bool(mine) and fingerprint(mine) == fingerprint(active)
    except ValueError:
        same = False
    if not same:
        raise PyinfraError(
            f"{me.name} holds CA material in {s.ca_dir} but is not a cert-manager, "
            f"and it is not a copy of {plan.active_ca}'s CA: move {s.ca_dir} aside by hand "
            "(it may be the only copy of that CA), or list the host in etcd_cert_managers"
        )
    # Its database (the certificates it issued, its revocations) is kept aside; the keys
    # and passwords go: CA keys belong on cert-managers only (the active CA has them).
    return [
        Op(
            "stop",
            "step-ca stopped and disabled (no longer a cert-manager)",
            "service",
            {"service": CA_SERVICE, "running": False, "enabled": False},
        ),
        shell(
            "retire",
            f"Move {s.ca_dir} aside without its secrets (no longer a cert-manager)",
            retire_command(s.ca_dir),
        ),
    ]


@deploy("Standby cert-manager")
def standby_ca() -> None:
    """A standby keeps step-ca stopped and has the CA user that owns its files.

    .. code:: python

        standby_ca()
    """
    emit(decide_standby(this_host(), ca_snapshot()))


def decide_standby(me: HostPlan, before: Snapshot) -> list[Op]:
    """A standby's step-ca stopped and disabled, and the CA account that owns its files."""
    ops = []
    # A former active that is reachable again must not keep serving.
    if not before.unit_is(CA_SERVICE, running=False, enabled=False):
        ops.append(
            Op(
                "stop",
                "step-ca stopped and disabled (standby)",
                "service",
                {"service": CA_SERVICE, "running": False, "enabled": False},
            )
        )
    return ops + account_ops(me.settings.ca_user, me.settings.ca_dir, "CA", before)


@deploy("CA material on standbys")
def copy_ca_material() -> None:
    """Keep an identical copy of the active CA's material on every standby.

    Call it on every cert-manager, active included, from one place: the copy is then
    one operation shared by all of them, which pyinfra runs only after every earlier
    operation of the active (its `init_ca`) has run. It does nothing on the active.

    .. code:: python

        copy_ca_material()
    """
    plan = get_plan()
    me: HostPlan = this_host()
    s = me.settings
    active = pyinfra_host(plan.active_ca)
    state: dict[str, str] = {}

    def needs_copy() -> bool:
        if me.is_active_ca:
            return False
        want, want_root, retired = _digests(active, s)
        have, have_root, _ = _digests(host, s)
        if want_root == "none":
            raise PyinfraError(f"the active cert-manager {plan.active_ca} has no CA material")
        # A root the active retired in a rotation is this CA's own past: a standby still
        # holding it missed the copy of an interrupted rotation, and is brought up to date.
        if have_root not in ("none", want_root, *retired):
            raise PyinfraError(
                f"standby {me.name} holds another CA (its {s.ca_root} differs "
                f"from {plan.active_ca}'s). Refusing to overwrite it: move {s.ca_dir} aside on "
                f"{me.name} if it is not needed, or take the host out of etcd_cert_managers"
            )
        state["want"] = want
        return want != have

    def copy() -> None:
        tmp, recipient = "", ""
        made = run_on(
            host,
            one_time_key_command(),
            "making a one-time age key",
        ).split()
        if len(made) == 2:
            tmp, recipient = made
        if not tmp.startswith(f"{NODE_TMP}/etcd-pki-sync.") or not AGE_RECIPIENT_RE.match(
            recipient
        ):
            raise PyinfraError(f"unexpected answer from age-keygen on {me.name}")
        try:
            ciphertext = run_on(
                active,
                encrypt_command(s.ca_dir, MATERIAL, [recipient], optional=OPTIONAL_MATERIAL),
                f"encrypting the CA material for {me.name}",
            )
            if not (ciphertext.startswith(ARMOR_BEGIN) and ciphertext.rstrip().endswith(ARMOR_END)):
                raise PyinfraError(f"{plan.active_ca} did not return age ciphertext")
            run_on(
                host,
                receive_material_command(tmp, material_install_script(s)),
                "installing the CA material",
                stdin=ciphertext,
            )
        finally:
            with contextlib.suppress(PyinfraError):  # best effort: it is in /run (tmpfs)
                run_on(host, f"rm -rf {shlex.quote(tmp)}", "removing the one-time key")
        have, _, _ = _digests(host, s)
        if have != state["want"]:
            raise PyinfraError(f"the CA material on {me.name} differs from {plan.active_ca}'s")
        logger.info(f"{host.print_prefix}CA material copied from {plan.active_ca} (age-encrypted)")

    call(
        f"Copy the CA material from {plan.active_ca} to standbys "
        "(age-encrypted to a one-time key of each)",
        copy,
        check=needs_copy,
    )
    if not me.is_active_ca:
        # The copy installs every file with these owners and modes itself; this repairs
        # what drifted before the run.
        ca_permissions(s, ca_snapshot())
