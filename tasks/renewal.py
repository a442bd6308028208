"""A systemd renewal service and timer per certificate, kept in sync with the plan."""

from __future__ import annotations

import shlex

from pyinfra.api import deploy

from etcd_pki.commands.files import (
    timers_enabled_command,
    units_enabled_command,
    write_files_command,
)
from etcd_pki.commands.metrics import metrics_script
from etcd_pki.commands.metrics import script_path as metrics_script_path
from etcd_pki.commands.shell import finish_swap
from etcd_pki.fields import systemd_quoted
from etcd_pki.metrics import STATE_DIR
from etcd_pki.plan import CertSpec, HostPlan
from facts.snapshot import Snapshot, Want
from tasks.common import render
from tasks.ops import Op, emit, shell
from tasks.run import snapshot, this_host

UNIT_DIR = "/etc/systemd/system"
UNIT_PREFIX = "step-renew-"
SUFFIXES = ("service", "timer")
STALE = (UNIT_DIR, f"{UNIT_PREFIX}*")  # every renewal unit on the host, planned or not


def _units(me: HostPlan) -> list[tuple[CertSpec, str, str]]:
    """(certificate, unit path, "service" | "timer") of each planned renewal unit."""
    return [(cert, f"{UNIT_DIR}/{cert.unit}.{sfx}", sfx) for cert in me.certs for sfx in SUFFIXES]


def reads(me: HostPlan) -> Want:
    units = [path for _, path, _ in _units(me)]
    paths = [*units, metrics_script_path(me.settings.bin_dir)]
    return Want.of(stat=paths, sha1=paths, units=map(_unit_name, units), finds={STALE})


def metrics_file(me: HostPlan) -> tuple[str, str, str]:
    """(path, text, mode) of the host's metrics writer, which the renewal units run."""
    s = me.settings
    health = f"https://127.0.0.1:{s.ca_port}/health" if me.is_active_ca else None
    return metrics_script_path(s.bin_dir), metrics_script(me, health), "755"


def _unit_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def unit_data(me: HostPlan, cert: CertSpec) -> dict:
    """Template variables of one certificate's renewal units."""
    s = me.settings
    post = me.settings.renew_post_command
    step = f"{s.bin_dir}/step"
    tmp_crt, tmp_key = (
        f"{cert.ssl_dir}/.{cert.name}.crt.new",
        f"{cert.ssl_dir}/.{cert.name}.key.new",
    )
    return {
        "cert": cert,
        "bin_dir": s.bin_dir,
        "step_dir": s.step_dir,
        "renew_mode": s.renew_mode,
        "threshold": s.renew_threshold_percent,
        "tmp_crt": tmp_crt,
        "tmp_key": tmp_key,
        # Stopped (killed, failed) between the key's rename and the certificate's: the
        # new certificate follows its key; then the leftovers go.
        "stop_post": systemd_quoted(
            finish_swap(step, shlex.quote(tmp_crt), shlex.quote(cert.crt), shlex.quote(cert.key))
            + f"; rm -f {shlex.quote(tmp_crt)} {shlex.quote(tmp_key)}"
        ),
        # Quoted for systemd: `%` and `$` reach the shell as written, not expanded.
        "post_command": systemd_quoted(post) if post else None,
        "metrics": metrics_script_path(s.bin_dir),
        "metrics_dir": s.metrics_dir,
        "state_dir": STATE_DIR,
        "on_calendar": s.renew_on_calendar,
        "randomized_delay": s.renew_randomized_delay,
        "persistent": s.renew_persistent,
    }


def planned_files(me: HostPlan) -> dict[str, str]:
    """Each file of ``me`` this task writes (renewal units, the metrics writer), as it
    writes it."""
    files = {
        dest: render(f"templates/step-renew.{suffix}.j2", **unit_data(me, cert))
        for cert, dest, suffix in _units(me)
    }
    path, text, _ = metrics_file(me)
    return {**files, path: text}


def planned_modes(me: HostPlan) -> dict[str, str]:
    """The mode of each planned file (units 644, the writer 755)."""
    script = metrics_script_path(me.settings.bin_dir)
    return {path: "755" if path == script else "644" for path in planned_files(me)}


def changes(me: HostPlan, before: Snapshot) -> tuple[list[str], str]:
    """(stale unit files, the command that writes the units that differ and enables the
    timers), from the host's state before the run (this task is the only writer of these
    units)."""
    units = _units(me)
    timers = [f"{cert.unit}.timer" for cert in me.certs]
    paths = [path for _, path, _ in units]
    written, rewritten = [], set()
    planned = planned_files(me)
    for cert, dest, _ in units:
        text = planned[dest]
        if not before.has_text(dest, text, mode="644"):
            written.append((dest, text, "644"))
            rewritten.add(cert.unit)
    script = metrics_script_path(me.settings.bin_dir)
    if not before.has_text(script, planned[script], mode="755"):
        written.append((script, planned[script], "755"))
    stale = sorted(set(before.found[STALE]) - set(paths))
    idle = [t for t in timers if not before.unit_is(t, running=True, enabled=True)]
    # A certificate's new units (a new host, a new certificate: systemd knows neither
    # the timer nor its service) need no daemon-reload: systemd reads a unit file it has
    # not loaded when the unit is first used (starting the timer loads its service).
    reload = bool(stale) or any(
        not (before.unit_not_loaded(f"{u}.timer") and before.unit_not_loaded(f"{u}.service"))
        for u in rewritten
    )
    if reload:
        enable = units_enabled_command(idle, daemon_reload=True)
    else:
        enable = timers_enabled_command(idle) if idle else ""
    command = " && ".join(c for c in (write_files_command(written), enable) if c)
    return stale, command


def units_command(me: HostPlan) -> str | None:
    """The one command that brings ``me``'s renewal units in line ("" if they are), or
    None when stale units must go first (`renewal_units` removes them)."""
    stale, command = changes(me, snapshot(reads(me)))
    return None if stale else command


@deploy("Renewal timers")
def renewal_units() -> None:
    """Install `step-renew-<cert>.service/.timer` for each certificate of this host,
    enable the timers, and remove units of certificates the host no longer has.

    .. code:: python

        renewal_units()
    """
    me = this_host()
    emit(decide(me, snapshot(reads(me))))


def decide(me: HostPlan, before: Snapshot) -> list[Op]:
    """The operations that bring ``me``'s renewal units in line with the plan."""
    stale, command = changes(me, before)
    ops = []
    for timer in (p for p in stale if p.endswith(".timer")):
        name = _unit_name(timer)
        ops.append(
            shell(
                f"stop {name}",
                f"Stop and disable {name} (certificate no longer planned)",
                f"systemctl disable --now {name} || true",
            )
        )
    for path in stale:
        ops.append(Op(f"remove {path}", f"Remove {path}", "file", {"path": path, "present": False}))
    if command:
        # Unit files, daemon-reload if needed, and enabling in one command.
        ops.append(
            shell("units", f"Renewal units in {UNIT_DIR}, timers enabled and active", command)
        )
    return ops
