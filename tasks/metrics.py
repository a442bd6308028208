"""The host's metrics file, written again at the end of every deploy run.

The writer itself (`{bin_dir}/etcd-pki-metrics`, etcd_pki/commands/metrics.py) is
installed with the renewal units (tasks/renewal.py), which run it after every renewal
run; the CRL fetch runs it too. Here the deploy runs it once more, after everything else
on the host, so the file shows what the run left. Writing the file is not a change:
the operation never runs (its condition runs the command and answers False), so a
re-run that changes nothing else reports no change. On etcd members the refresh rides
on the health report's command (`metrics_prefix`): no round trip of its own.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy

from etcd_pki.commands.metrics import FAILED, output_path, refresh_command
from etcd_pki.plan import HostPlan
from tasks.common import call, run_on
from tasks.run import this_host


def metrics_prefix(me: HostPlan) -> str:
    """The refresh as the start of another command (its own failure is only reported)."""
    return f"{{ {refresh_command(me)}; }}; "


def report(me: HostPlan, output: str) -> None:
    """Warn when the refresh's output says the file was not written."""
    if FAILED in output.split():
        logger.warning(
            f"{host.print_prefix}metrics not written to {output_path(me.settings.metrics_dir)} "
            "(run `etcd-pki-metrics` on the host to see why)"
        )


@deploy("Metrics")
def refresh_metrics() -> None:
    """Write `etcd_pki.prom` again (a host that is not an etcd member: members do it in
    `report_health`). Reported as no change.

    .. code:: python

        refresh_metrics()
    """
    me = this_host()

    def refresh() -> bool:
        report(me, run_on(host, refresh_command(me), "the metrics refresh"))
        return False  # a refreshed file is not a change

    call("Metrics file", lambda: None, check=refresh)  # a failure: the message, no traceback
