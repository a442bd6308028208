"""A systemd renewal service and timer per certificate, kept in sync with the plan."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from etcd_pki.plan import CertSpec, HostPlan
from tasks.common import rendered_sha1, snapshot, this_host

UNIT_DIR = "/etc/systemd/system"
UNIT_PREFIX = "step-renew-"
SUFFIXES = ("service", "timer")


def unit_data(me: HostPlan, cert: CertSpec) -> dict:
    """Template variables of one certificate's renewal units."""
    s = me.settings
    post = me.settings.renew_post_command
    return {
        "cert": cert,
        "bin_dir": s.bin_dir,
        "step_dir": s.step_dir,
        "renew_mode": s.renew_mode,
        "threshold": s.renew_threshold_percent,
        "tmp_crt": f"{cert.ssl_dir}/.{cert.name}.crt.new",
        "tmp_key": f"{cert.ssl_dir}/.{cert.name}.key.new",
        "post_command": post,
        "on_calendar": s.renew_on_calendar,
        "randomized_delay": s.renew_randomized_delay,
        "persistent": s.renew_persistent,
    }


@deploy("Renewal timers")
def renewal_units() -> None:
    """Install `step-renew-<cert>.service/.timer` for each certificate of this host,
    enable the timers, and remove units of certificates the host no longer has.

    .. code:: python

        renewal_units()
    """
    me = this_host()
    units = [(cert, f"{UNIT_DIR}/{cert.unit}.{sfx}", sfx) for cert in me.certs for sfx in SUFFIXES]
    timers = [f"{cert.unit}.timer" for cert in me.certs]
    # One command reads every unit file, timer and stale unit; operations are emitted
    # only where something differs (this task is the only writer of these units).
    pattern = (UNIT_DIR, f"{UNIT_PREFIX}*")
    paths = [path for _, path, _ in units]
    before = snapshot(stat=paths, sha1=paths, units=timers, finds={pattern})
    changed = []
    for cert, dest, suffix in units:
        data = unit_data(me, cert)
        src = f"templates/step-renew.{suffix}.j2"
        if before.has_content(dest, rendered_sha1(src, **data), mode="644"):
            continue
        changed.append(
            files.template(
                name=f"Renewal {suffix} of the {cert.kind} certificate",
                src=src,
                dest=dest,
                mode="644",
                **data,
            )
        )

    stale = sorted(set(before.found[pattern]) - set(paths))
    for timer in (p for p in stale if p.endswith(".timer")):
        name = timer.rsplit("/", 1)[-1]
        server.shell(
            name=f"Stop and disable {name} (certificate no longer planned)",
            commands=[f"systemctl disable --now {name} || true"],
        )
    for path in stale:
        changed.append(files.file(name=f"Remove {path}", path=path, present=False))

    if changed:
        systemd.daemon_reload(
            name="systemd daemon-reload (renewal units)", _if=any_changed(*changed)
        )
    for cert, timer in zip(me.certs, timers, strict=True):
        if before.unit_is(timer, running=True, enabled=True):
            continue
        systemd.service(
            name=f"Renewal timer of the {cert.kind} certificate enabled and active",
            service=timer,
            running=True,
            enabled=True,
        )
