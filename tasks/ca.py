"""step-ca on the active cert-manager: user, secrets, `step ca init`, claims, service."""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.api import deploy

from etcd_pki.commands.ca import (
    CLAIMS,
    LEAF_TEMPLATE,
    RESTART,
    claims_command,
    crl_config_command,
    init_command,
    ledger_command,
    root_key_command,
    root_password_file,
    set_ca_url_command,
    set_dns_names_command,
)
from etcd_pki.commands.files import units_enabled_command, write_files_command
from etcd_pki.crl import crl_config_matches
from etcd_pki.plan import ClusterPlan, HostPlan
from etcd_pki.redundancy import defaults_ca_url
from etcd_pki.settings import Settings, parse_duration
from facts.pki import CaClaims, PublicFile, StepVersions
from facts.redundancy import CaCrlConfig, CaDnsNames
from facts.snapshot import Snapshot, Want
from tasks.common import account_ops, render
from tasks.ops import Op, emit, shell
from tasks.run import fact_before_run, fact_want, get_plan, snapshot, this_host

# (path below ca_dir, owner, group, mode). The root key stays root's: step-ca never
# reads it at run time. The intermediate key and its password belong to the CA user.
CA_FILES = (
    ("config/ca.json", "root", "CA", "640"),
    ("config/defaults.json", "root", "CA", "644"),
    ("certs/root_ca.crt", "root", "root", "644"),
    ("certs/intermediate_ca.crt", "root", "root", "644"),
    ("secrets/root_ca_key", "root", "root", "400"),
    ("secrets/intermediate_ca_key", "CA", "CA", "400"),
    ("secrets/password", "CA", "CA", "400"),
    ("secrets/provisioner_password", "root", "root", "400"),
    # The root key's own password, age-encrypted to `backup_recipients` (see root_key).
    ("secrets/root_ca_key.password.age", "root", "root", "400"),
    # Every certificate step-ca issued and every revocation (public data: tasks/crl.py).
    ("ledger.tsv", "root", "root", "644"),
    # A rotation's state and, during a root rotation, the next root and intermediate
    # (etcd_pki/commands/rotation.py).
    ("rotation/state", "root", "root", "644"),
    ("rotation/root_ca.crt", "root", "root", "644"),
    ("rotation/intermediate_ca.crt", "root", "root", "644"),
    ("rotation/root_ca_key", "root", "root", "400"),
    ("rotation/intermediate_ca_key", "CA", "CA", "400"),
    ("rotation/root_ca_key.password.age", "root", "root", "400"),
    ("rotation/previous_root_ca.crt", "root", "root", "644"),
)
CA_DIRS = (
    ("", "root", "CA", "750"),
    ("config", "root", "CA", "750"),
    ("certs", "root", "CA", "755"),
    ("secrets", "root", "CA", "750"),
    ("db", "CA", "CA", "700"),
    ("rotation", "root", "CA", "750"),
)


def claims_match(found: dict[str, str], s: Settings) -> bool:
    try:
        return found.get("template") == LEAF_TEMPLATE and all(
            parse_duration(found[claim]) == parse_duration(getattr(s, setting))
            for claim, setting in CLAIMS.items()
        )
    except (KeyError, ValueError):
        return False


def _owner(value: str, s: Settings) -> str:
    return s.ca_user if value == "CA" else value


UNIT_TEMPLATE = "templates/step-ca.service.j2"
UNIT_PATH = "/etc/systemd/system/step-ca.service"


def ca_account(s: Settings, before: Snapshot | None = None) -> None:
    """The system user and group step-ca runs as (also on standbys: they own its files).

    With ``before`` (see ca_snapshot), operations it shows nothing to do for are left out.
    """
    emit(account_ops(s.ca_user, s.ca_dir, "CA", before))


def permission_ops(s: Settings, before: Snapshot | None = None) -> list[Op]:
    """Owner and mode of every CA file and directory (CA_FILES, CA_DIRS).

    With ``before``, files and directories it shows right are left out: pass it only
    when nothing earlier in the run can have changed them.
    """
    fix_files = [
        entry
        for entry in _entries(s, CA_FILES)
        # An absent file has nothing to fix (optional ones, like the root key's
        # encrypted password without backup_recipients); whoever writes it sets both.
        if not (before and (before.is_file(*entry) or before.is_absent(entry[0])))
    ]
    return _directory_ops(s, CA_DIRS, before, fix_files)


def ca_permissions(s: Settings, before: Snapshot | None = None) -> None:
    """`permission_ops`, emitted."""
    emit(permission_ops(s, before))


def _entries(s: Settings, table) -> list[tuple[str, str, str, str]]:
    """(full path, user, group, mode) of CA_FILES/CA_DIRS rows."""
    return [
        (f"{s.ca_dir}/{path}".rstrip("/"), _owner(owner, s), _owner(group, s), mode)
        for path, owner, group, mode in table
    ]


def _directory_ops(s: Settings, table, before: Snapshot | None, fix_files=()) -> list[Op]:
    """Directories of ``table`` (made when missing) and ``fix_files``, one command."""
    dirs = [e for e in _entries(s, table) if not (before and before.is_directory(*e))]
    if not (dirs or fix_files):
        return []
    name = f"Owner and mode of {len(dirs)} CA directories and {len(fix_files)} files"
    return [Op(f"ownership {len(dirs)}+{len(fix_files)}", name, "ownership",
               {"dirs": dirs, "files": list(fix_files)})]  # fmt: skip


def reads(me: HostPlan) -> Want:
    """A cert-manager's CA account, files, directories, unit and service (owner, group
    and mode only: no CA file is read)."""
    if not me.is_cert_manager:
        return Want()
    s = me.settings
    d = s.ca_dir
    paths = {f"{d}/{p}".rstrip("/") for p, *_ in (*CA_FILES, *CA_DIRS)}
    want = Want.of(
        stat={*paths, UNIT_PATH},
        sha1={UNIT_PATH},
        units={"step-ca.service"},
        users={s.ca_user},
        groups={s.ca_user},
    )
    if me.is_active_ca:  # what init_ca compares with the plan (no secret among them)
        ca_json = f"{d}/config/ca.json"
        want |= fact_want(CaClaims, ca_json=ca_json) | fact_want(CaDnsNames, ca_json=ca_json)
        want |= fact_want(CaCrlConfig, ca_json=ca_json)
        want |= fact_want(PublicFile, path=f"{d}/config/defaults.json")
    return want


def ca_snapshot() -> Snapshot:
    """This cert-manager's CA as it was before the run."""
    return snapshot(reads(this_host()))


@deploy("Initialise step-ca")
def init_ca() -> None:
    """Create the CA on the active cert-manager (once) and keep step-ca running.

    Every secret is generated here, on this node; none passes through the controller.

    .. code:: python

        init_ca()
    """
    plan, me = get_plan(), this_host()
    s = me.settings
    ca_json = f"{s.ca_dir}/config/ca.json"
    facts = CaFacts(
        claims=fact_before_run(CaClaims, ca_json=ca_json),
        dns_names=fact_before_run(CaDnsNames, ca_json=ca_json),
        crl_config=fact_before_run(CaCrlConfig, ca_json=ca_json),
        defaults_json=fact_before_run(PublicFile, path=f"{s.ca_dir}/config/defaults.json"),
        step_ca_version=fact_before_run(StepVersions, bin_dir=s.bin_dir).get("step-ca"),
    )
    emit(decide(me, plan, ca_snapshot(), facts))


@dataclass(frozen=True)
class CaFacts:
    """What the active CA's configuration held before the run (no secret among them)."""

    claims: dict | None  # the provisioner's claims and template; None: no ca.json
    dns_names: list[str] | None  # ca.json's dnsNames
    crl_config: dict | None  # ca.json's crl object
    defaults_json: str | None  # config/defaults.json
    step_ca_version: str | None  # the step-ca binary installed


def planned_files(me: HostPlan) -> dict[str, str]:
    """step-ca's unit file as this task writes it."""
    s = me.settings
    unit_data = {
        "ca_dir": s.ca_dir,
        "ca_user": s.ca_user,
        "bin_dir": s.bin_dir,
        "ca_port": s.ca_port,
    }
    return {UNIT_PATH: render(UNIT_TEMPLATE, **unit_data)}


def decide(me: HostPlan, plan: ClusterPlan, before: Snapshot, facts: CaFacts) -> list[Op]:
    """The operations that create the CA on the active cert-manager (once) and keep
    step-ca configured as the plan says and running.

    Operations the snapshot shows nothing to do for are left out. The account and the
    unit are written by nothing else; files and directories only while nothing below
    touches the CA (no init, lifetimes or names change): see `untouched`.
    """
    s = me.settings
    d = s.ca_dir
    ops = account_ops(s.ca_user, s.ca_dir, "CA", before)
    # Only the top and secrets/ before init: `step ca init` creates the rest.
    ops += _directory_ops(s, (CA_DIRS[0], CA_DIRS[3]), before)
    if facts.claims is None:
        # Passwords: random, made on this node, 0400, never printed. Only for a new CA:
        # an existing CA's keys are encrypted with the passwords it already has.
        for secret in ("password", "provisioner_password"):
            path = f"{d}/secrets/{secret}"
            if not before.is_file(path):
                ops.append(
                    shell(
                        f"secret {secret}",
                        f"Generate the CA's {secret.replace('_', ' ')} on this node",
                        f"umask 077; head -c 32 /dev/urandom | base64 -w0 > {path}.new && "
                        f"mv {path}.new {path}",
                    )
                )
        ops.append(
            shell(
                "init",
                f"step ca init {s.ca_name} (names: {', '.join(plan.ca_sans)})",
                init_command(plan, s),
            )
        )
        untouched = False
    else:
        ops += _name_ops(plan, s, facts)
        if not before.is_file(s.ledger):
            ops.append(shell("ledger", f"Create the CA's ledger {s.ledger}", ledger_command(s)))
        if not crl_config_matches(facts.crl_config, s.crl_cache_duration):
            ops.append(
                shell(
                    "crl",
                    f"ca.json crl: publish a CRL (valid {s.crl_cache_duration}), "
                    "a new one on every revocation",
                    crl_config_command(s),
                )
            )
        if not claims_match(facts.claims, s):
            ops.append(
                shell(
                    "claims",
                    f"Set certificate lifetimes in ca.json (min {s.cert_lifetime_min}, "
                    f"default {s.cert_lifetime}, max {s.cert_lifetime_max}) and the leaf "
                    "template",
                    claims_command(s),
                )
            )
        untouched = not any(op.key in ("names", "url", "crl", "claims") for op in ops)
    keys = {op.key for op in ops}
    if s.backup_recipients and not before.is_file(root_password_file(s)):
        ops.append(
            shell(
                "root key",
                "The root key gets its own password, age-encrypted to backup_recipients "
                "(step-ca never needs it)",
                root_key_command(s),
            )
        )
    ops += permission_ops(s, before if untouched else None)

    ((unit_path, unit_text),) = planned_files(me).items()
    if not before.has_text(unit_path, unit_text, mode="644"):
        commands = [
            write_files_command([(unit_path, unit_text, "644")]),
            units_enabled_command([], daemon_reload=True),
        ]
        ops.append(Op("unit", "step-ca systemd unit (and daemon-reload)", "steps",
                      {"commands": commands}))  # fmt: skip
        keys.add("unit")
    # A step-ca binary that install_step replaces in this run (the prepare-time versions:
    # what was installed before the run) is only used once step-ca restarts.
    installed = facts.step_ca_version
    waited_on = []
    if "init" not in keys and installed not in (None, s.step_ca_version):
        ops.append(
            shell(
                "restart",
                f"Restart step-ca (binary {installed or '?'} -> {s.step_ca_version})",
                RESTART,
            )  # fmt: skip
        )
        waited_on.append("restart")
    elif keys & {"unit", "names", "crl"}:
        # step-ca reads its TLS names and the crl settings only at start.
        ops.append(
            shell(
                "restart",
                "Restart step-ca (unit, its own TLS names or its CRL settings changed)",
                RESTART,
                when_changed=tuple(k for k in ("unit", "names", "crl") if k in keys),
            )
        )
        waited_on.append("restart")
    if "init" in keys or not before.unit_is("step-ca.service", running=True, enabled=True):
        ops.append(Op("start", "step-ca enabled and running", "units_enabled",
                      {"units": ["step-ca.service"]}))  # fmt: skip
        waited_on.append("start")
    if "claims" in keys and "init" not in keys:
        ops.append(
            Op(
                "reload",
                "Reload step-ca (new lifetimes or leaf template)",
                "service",
                {"service": "step-ca.service", "reloaded": True},
                when_changed=("claims",),
            )
        )
    waited_on += [k for k in ("init", "claims") if k in keys]
    if waited_on:
        ops.append(
            shell(
                "wait",
                "Wait until step-ca answers",
                f"for i in $(seq 1 60); do {s.bin_dir}/step ca health --ca-url {plan.ca_url} "
                f"--root {d}/certs/root_ca.crt >/dev/null 2>&1 && exit 0; sleep 0.5; done; "
                f"echo 'step-ca did not answer on {plan.ca_url} within 30 s; "
                "see journalctl -u step-ca' >&2; exit 1",
                when_changed=tuple(waited_on),
            )
        )
    return ops


def _name_ops(plan: ClusterPlan, s: Settings, facts: CaFacts) -> list[Op]:
    """Make ca.json's `dnsNames` (step-ca's own TLS certificate, made at start) and the
    CA's defaults.json `ca-url` match this host. They differ after a failover (the
    material was copied from the previous active) or a change of `ca_extra_sans`.
    Rewriting `dnsNames` ("names") needs a restart of step-ca, the `ca-url` ("url") not.
    """
    d = s.ca_dir
    ops = []
    names = facts.dns_names
    if names is not None and set(names) != set(plan.ca_sans):
        ops.append(
            shell(
                "names",
                f"ca.json dnsNames: {', '.join(plan.ca_sans)} (was {', '.join(names) or '-'})",
                set_dns_names_command(f"{d}/config/ca.json", plan.ca_sans),
            )
        )
    defaults = f"{d}/config/defaults.json"
    url = defaults_ca_url(facts.defaults_json)
    if url is not None and url != plan.ca_url:
        ops.append(
            shell(
                "url",
                f"{defaults} ca-url: {plan.ca_url} (was {url})",
                set_ca_url_command(defaults, plan.ca_url),
            )
        )
    return ops
