"""step-ca on the active cert-manager: user, secrets, `step ca init`, claims, service."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

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
from tasks import batch
from tasks.common import render, system_account
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
)
CA_DIRS = (
    ("", "root", "CA", "750"),
    ("config", "root", "CA", "750"),
    ("certs", "root", "CA", "755"),
    ("secrets", "root", "CA", "750"),
    ("db", "CA", "CA", "700"),
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
    system_account(s.ca_user, s.ca_dir, "CA", before)


def ca_permissions(s: Settings, before: Snapshot | None = None) -> None:
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
    _directories(s, CA_DIRS, before, fix_files)


def _entries(s: Settings, table) -> list[tuple[str, str, str, str]]:
    """(full path, user, group, mode) of CA_FILES/CA_DIRS rows."""
    return [
        (f"{s.ca_dir}/{path}".rstrip("/"), _owner(owner, s), _owner(group, s), mode)
        for path, owner, group, mode in table
    ]


def _directories(s: Settings, table, before: Snapshot | None, fix_files=()) -> None:
    """Directories of ``table`` (made when missing) and ``fix_files``, one command."""
    dirs = [e for e in _entries(s, table) if not (before and before.is_directory(*e))]
    if dirs or fix_files:
        batch.ownership(
            name=f"Owner and mode of {len(dirs)} CA directories and {len(fix_files)} files",
            dirs=dirs,
            files=fix_files,
        )


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
    plan = get_plan()
    me: HostPlan = this_host()
    s = me.settings
    d = s.ca_dir

    # Operations the snapshot shows nothing to do for are left out. The account and the
    # unit are written by nothing else; files and directories only while nothing below
    # touches the CA (no init, lifetimes or names change): see `untouched`.
    before = ca_snapshot()
    ca_account(s, before)
    # Only the top and secrets/ before init: `step ca init` creates the rest.
    _directories(s, (CA_DIRS[0], CA_DIRS[3]), before)

    claims = fact_before_run(CaClaims, ca_json=f"{d}/config/ca.json")
    if claims is None:
        # Passwords: random, made on this node, 0400, never printed. Only for a new CA:
        # an existing CA's keys are encrypted with the passwords it already has.
        for secret in ("password", "provisioner_password"):
            path = f"{d}/secrets/{secret}"
            if not before.is_file(path):
                server.shell(
                    name=f"Generate the CA's {secret.replace('_', ' ')} on this node",
                    commands=[
                        f"umask 077; head -c 32 /dev/urandom | base64 -w0 > {path}.new && "
                        f"mv {path}.new {path}"
                    ],
                )
        initialised = server.shell(
            name=f"step ca init {s.ca_name} (names: {', '.join(plan.ca_sans)})",
            commands=[init_command(plan, s)],
        )
        claims_changed = initialised
        names_changed = url_changed = crl_changed = None
    else:
        initialised = None
        claims_changed = crl_changed = None
        names_changed, url_changed = _converge_ca_names(plan, s)
        if not before.is_file(s.ledger):
            server.shell(name=f"Create the CA's ledger {s.ledger}", commands=[ledger_command(s)])
        if not crl_config_matches(
            fact_before_run(CaCrlConfig, ca_json=s.ca_json), s.crl_cache_duration
        ):
            crl_changed = server.shell(
                name=f"ca.json crl: publish a CRL (valid {s.crl_cache_duration}), "
                "a new one on every revocation",
                commands=[crl_config_command(s)],
            )
        if not claims_match(claims, s):
            claims_changed = server.shell(
                name=f"Set certificate lifetimes in ca.json (min {s.cert_lifetime_min}, "
                f"default {s.cert_lifetime}, max {s.cert_lifetime_max}) and the leaf template",
                commands=[claims_command(s)],
            )

    untouched = claims is not None and not (
        claims_changed or names_changed or url_changed or crl_changed
    )
    protected = before.is_file(root_password_file(s))
    if s.backup_recipients and not protected:
        server.shell(
            name="The root key gets its own password, age-encrypted to backup_recipients "
            "(step-ca never needs it)",
            commands=[root_key_command(s)],
        )
    ca_permissions(s, before if untouched else None)

    unit_data = {"ca_dir": d, "ca_user": s.ca_user, "bin_dir": s.bin_dir, "ca_port": s.ca_port}
    unit = None
    unit_text = render(UNIT_TEMPLATE, **unit_data)
    if not before.has_text(UNIT_PATH, unit_text, mode="644"):
        unit = batch.steps(
            name="step-ca systemd unit (and daemon-reload)",
            commands=[
                write_files_command([(UNIT_PATH, unit_text, "644")]),
                units_enabled_command([], daemon_reload=True),
            ],
        )
    # A step-ca binary that install_step replaces in this run (the prepare-time versions:
    # what was installed before the run) is only used once step-ca restarts.
    installed = fact_before_run(StepVersions, bin_dir=s.bin_dir).get("step-ca")
    upgraded = initialised is None and installed not in (None, s.step_ca_version)
    restarted = started = None
    if upgraded:
        restarted = server.shell(
            name=f"Restart step-ca (binary {installed or '?'} -> {s.step_ca_version})",
            commands=[RESTART],
        )
    elif unit or names_changed or crl_changed:
        # step-ca reads its TLS names and the crl settings only at start.
        restarted = server.shell(
            name="Restart step-ca (unit, its own TLS names or its CRL settings changed)",
            commands=[RESTART],
            _if=any_changed(*(op for op in (unit, names_changed, crl_changed) if op)),
        )
    if initialised or not before.unit_is("step-ca.service", running=True, enabled=True):
        started = batch.units_enabled(name="step-ca enabled and running", units=["step-ca.service"])
    if claims_changed is not None and initialised is None:
        systemd.service(
            name="Reload step-ca (new lifetimes or leaf template)",
            service="step-ca.service",
            reloaded=True,
            _if=claims_changed.did_change,
        )
    waited_on = [op for op in (restarted, started, initialised, claims_changed) if op]
    if not waited_on:
        return
    server.shell(
        name="Wait until step-ca answers",
        commands=[
            f"for i in $(seq 1 60); do {s.bin_dir}/step ca health --ca-url {plan.ca_url} "
            f"--root {d}/certs/root_ca.crt >/dev/null 2>&1 && exit 0; sleep 0.5; done; "
            f"echo 'step-ca did not answer on {plan.ca_url} within 30 s; "
            "see journalctl -u step-ca' >&2; exit 1"
        ],
        _if=any_changed(*waited_on),
    )


def _converge_ca_names(plan: ClusterPlan, s: Settings):
    """Make ca.json's `dnsNames` (step-ca's own TLS certificate, made at start) and the
    CA's defaults.json `ca-url` match this host. They differ after a failover (the
    material was copied from the previous active) or a change of `ca_extra_sans`.

    Returns the operations that rewrite `dnsNames` (step-ca must restart) and the
    `ca-url`, each None when there is nothing to rewrite.
    """
    d = s.ca_dir
    names = fact_before_run(CaDnsNames, ca_json=f"{d}/config/ca.json")
    changed = None
    if names is not None and set(names) != set(plan.ca_sans):
        changed = server.shell(
            name=f"ca.json dnsNames: {', '.join(plan.ca_sans)} (was {', '.join(names) or '-'})",
            commands=[set_dns_names_command(f"{d}/config/ca.json", plan.ca_sans)],
        )
    defaults = f"{d}/config/defaults.json"
    url = defaults_ca_url(fact_before_run(PublicFile, path=defaults))
    url_changed = None
    if url is not None and url != plan.ca_url:
        url_changed = server.shell(
            name=f"{defaults} ca-url: {plan.ca_url} (was {url})",
            commands=[set_ca_url_command(defaults, plan.ca_url)],
        )
    return changed, url_changed
