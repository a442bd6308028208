"""Make every host trust the CA: root_ca.crt in ssl_dir and `step ca bootstrap`."""

from __future__ import annotations

import json
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, python, server

from etcd_pki.certs import fingerprint
from facts.pki import PublicFile
from tasks.common import ca_root_pem, get_plan, this_host


def _bootstrap_state() -> tuple[bool, bool]:
    """(root file differs, step's CA URL/fingerprint differ), read at execute time."""
    plan = get_plan()
    s = this_host().settings
    root = ca_root_pem()
    have_root = host.get_fact(PublicFile, path=f"{s.ssl_dir}/root_ca.crt")
    defaults_text = host.get_fact(PublicFile, path=f"{s.step_dir}/config/defaults.json")
    try:
        defaults = json.loads(defaults_text or "{}")
    except ValueError:
        defaults = {}
    step_stale = (defaults.get("ca-url"), defaults.get("fingerprint")) != (
        plan.ca_url,
        fingerprint(root),
    )
    return have_root != root, step_stale


@deploy("Trust the CA")
def trust_ca() -> None:
    """Install the root certificate and point `step` at the active CA by fingerprint.

    The system trust store is left alone unless `install_root_in_trust_store` is set.

    .. code:: python

        trust_ca()
    """
    plan = get_plan()
    s = this_host().settings
    root_path = f"{s.ssl_dir}/root_ca.crt"
    files.directory(name=f"Directory {s.ssl_dir}", path=s.ssl_dir, mode="755")

    def install_root() -> None:
        files.put(
            name=f"{root_path} from {plan.active_ca}",
            src=StringIO(ca_root_pem()),
            dest=root_path,
            mode="644",
        )

    def bootstrap() -> None:
        install = " --install" if s.install_root_in_trust_store else ""
        server.shell(
            name=f"step ca bootstrap --ca-url {plan.ca_url}",
            commands=[
                f"STEPPATH={s.step_dir} {s.bin_dir}/step ca bootstrap --ca-url {plan.ca_url} "
                f"--fingerprint {fingerprint(ca_root_pem())} --force{install}"
            ],
        )

    python.call(
        name=f"Install {root_path} from the CA",
        function=install_root,
        _if=lambda: _bootstrap_state()[0],
    )
    python.call(
        name=f"Bootstrap step against {plan.ca_url}",
        function=bootstrap,
        _if=lambda: _bootstrap_state()[1],
    )
    for link in ("peer-ca.crt", "client-ca.crt"):
        files.link(
            name=f"{s.ssl_dir}/{link} -> root_ca.crt",
            path=f"{s.ssl_dir}/{link}",
            target="root_ca.crt",
        )
