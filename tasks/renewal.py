"""A systemd renewal service and timer per certificate, kept in sync with the plan."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import FindFiles
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from etcd_pki.plan import CertSpec, HostPlan
from tasks.common import this_host

UNIT_DIR = "/etc/systemd/system"
UNIT_PREFIX = "step-renew-"


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
    changed = []
    for cert in me.certs:
        data = unit_data(me, cert)
        for suffix in ("service", "timer"):
            changed.append(
                files.template(
                    name=f"Renewal {suffix} of the {cert.kind} certificate",
                    src=f"templates/step-renew.{suffix}.j2",
                    dest=f"{UNIT_DIR}/{cert.unit}.{suffix}",
                    mode="644",
                    **data,
                )
            )

    wanted = {f"{UNIT_DIR}/{c.unit}.{sfx}" for c in me.certs for sfx in ("service", "timer")}
    present = host.get_fact(FindFiles, path=UNIT_DIR, fname=f"{UNIT_PREFIX}*", maxdepth=1) or []
    stale = sorted(set(present) - wanted)
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
    for cert in me.certs:
        systemd.service(
            name=f"Renewal timer of the {cert.kind} certificate enabled and active",
            service=f"{cert.unit}.timer",
            running=True,
            enabled=True,
        )
