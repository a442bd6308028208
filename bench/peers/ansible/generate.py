"""The peer's playbook, inventory and configuration for a cluster plan (pure: no I/O).

The same job as our deploy's PKI phases, written the way the collection's users would
(its READMEs and module docs), for the hosts of one ``ClusterPlan`` (``etcd_pki.plan``,
so subjects, SANs, owners and paths are ours by construction):

1. the active cert-manager: role ``maxhoesel.smallstep.step_ca`` (step-ca initialised
   with our CA name, DNS names, port, user and directory), then the provisioner the
   role leaves out (``step_ca_provisioner``: JWK, our lifetime claims and our leaf
   template, which gives client certificates clientAuth only), step-ca restarted for
   it, and the root's fingerprint read for the other hosts;
2. every host: role ``step_bootstrap_host`` (``step ca bootstrap`` into our
   ``step_dir``, not into the system trust store, as ``install_root_in_trust_store``
   is off by default), the root copied into ``ssl_dir`` with our two links, then per
   certificate a token from ``step_ca_token`` delegated to the CA and
   ``step_ca_certificate`` with that token (key made on the host), then the key's and
   the certificate's owners and modes.

Binaries are preinstalled before timing (GitHub cannot be reached here): the roles are
told not to install ``step`` (``step_cli_install: false``) and get ``step_ca_version``
set to the installed version, so ``step_ca``'s install check finds nothing to do.

Ansible reads YAML; the files are written as JSON, which is YAML too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from etcd_pki.plan import CERT_MANAGERS, CLIENTS, ETCD, CertSpec, ClusterPlan

COLLECTION = "maxhoesel.smallstep"
# Where the bench preinstalls step for the peer: the collection's own name for it (the
# step_ca role runs `step-cli` from PATH in one task whatever step_cli_executable says).
STEP = "/usr/bin/step-cli"
STEP_CA = "/usr/bin/step-ca"  # the step_ca role's default step_ca_executable
KEY_ARGS = {
    "EC": {"kty": "EC", "curve": "P-256"},
    "RSA": {"kty": "RSA", "size": 2048},
    "OKP": {"kty": "OKP", "curve": "Ed25519"},
}
CALLBACK = "bench_log"  # callback_plugins/bench_log.py: one JSON line per task result


@dataclass(frozen=True)
class Target:
    """How Ansible reaches one host: ``docker`` (container name) or ``ssh`` (address)."""

    connection: str  # "docker" | "ssh"
    host: str  # container name or IP address
    ssh_key: str | None = None


def cert_vars(cert: CertSpec) -> dict[str, Any]:
    """One certificate as the playbook's loops read it (host var ``etcd_pki_certs``)."""
    return {
        "subject": cert.subject,
        "sans": list(cert.sans),
        "crt": cert.crt,
        "key": cert.key,
        "owner": cert.owner,
    }


def _connection_vars(target: Target) -> dict[str, Any]:
    if target.connection == "docker":
        return {
            "ansible_connection": "community.docker.docker",
            "ansible_host": target.host,
            "ansible_user": "root",
        }
    if target.connection == "ssh":
        return {
            "ansible_connection": "ssh",
            "ansible_host": target.host,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": target.ssh_key,
            "ansible_ssh_common_args": (
                "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -F /dev/null"
            ),
        }
    raise ValueError(f"unknown connection {target.connection!r}")


def inventory(plan: ClusterPlan, targets: Mapping[str, Target]) -> dict[str, Any]:
    """The inventory: our three groups, each host with its connection and certificates."""
    missing = sorted(set(plan.hosts) - set(targets))
    if missing:
        raise ValueError(f"no connection target for {', '.join(missing)}")
    groups: dict[str, dict[str, Any]] = {g: {"hosts": {}} for g in (ETCD, CLIENTS, CERT_MANAGERS)}
    for name, host in plan.hosts.items():
        data = {
            **_connection_vars(targets[name]),
            # Ansible would otherwise look for a Python on every host first.
            "ansible_python_interpreter": "/usr/bin/python3",
            "etcd_pki_certs": [cert_vars(c) for c in host.certs],
        }
        first = True
        for group in (ETCD, CLIENTS, CERT_MANAGERS):
            if group in host.groups:
                # Host vars once; a host in two groups is named again without them.
                groups[group]["hosts"][name] = data if first else {}
                first = False
    return {"all": {"children": groups}}


# At most this many hosts' token tasks connect to the CA at once over SSH. Each delegated
# task opens its own connection to the CA, all hosts at the same moment; sshd's default
# MaxStartups (10:30:100) drops unauthenticated connections past 10, and at 27 hosts
# some tasks failed UNREACHABLE. `throttle` on the task is the Ansible way out.
SSH_TOKEN_THROTTLE = 8


def playbook(plan: ClusterPlan, throttle: int | None = None) -> list[dict[str, Any]]:
    """The two plays: the CA, then every host's trust and certificates. ``throttle``:
    how many hosts' token tasks (delegated to the CA) may run at once (None: all)."""
    ca = plan.ca
    s = ca.settings
    ca_url = plan.ca_url
    ca_root = f"{s.ca_dir}/certs/root_ca.crt"
    step_root = f"{s.step_dir}/certs/root_ca.crt"
    template = f"{s.ca_dir}/templates/etcd-leaf.tpl"
    as_ca_user = {
        "become": True,
        "become_user": s.ca_user,
        "environment": {"STEPPATH": s.ca_dir},
    }
    ca_play = {
        "name": "step-ca on the active cert-manager",
        "hosts": ca.name,
        "vars_files": ["secrets.yml"],
        "roles": [
            {
                "role": f"{COLLECTION}.step_ca",
                "vars": {
                    "step_ca_name": s.ca_name,
                    "step_ca_root_password": "{{ etcd_pki_root_password }}",
                    "step_ca_dns": ",".join(plan.ca_sans),
                    "step_ca_address": f":{s.ca_port}",
                    "step_ca_user": s.ca_user,
                    "step_ca_path": s.ca_dir,
                    "step_ca_executable": STEP_CA,
                    "step_ca_version": s.step_ca_version,  # preinstalled: no download
                    "step_cli_install": False,
                    "step_cli_executable": STEP,
                },
            }
        ],
        "tasks": [
            {
                "name": "leaf template directory",
                "ansible.builtin.file": {
                    "path": f"{s.ca_dir}/templates",
                    "state": "directory",
                    "owner": s.ca_user,
                    "group": s.ca_user,
                    "mode": "0700",
                },
            },
            {
                "name": "leaf template (client certificates: clientAuth only)",
                "ansible.builtin.copy": {
                    "src": "step-leaf.tpl",
                    "dest": template,
                    "owner": s.ca_user,
                    "group": s.ca_user,
                    "mode": "0600",
                },
            },
            {
                "name": "JWK provisioner with our lifetimes and template",
                f"{COLLECTION}.step_ca_provisioner": {
                    "name": s.ca_provisioner,
                    "type": "JWK",
                    "jwk_create": True,
                    "password": "{{ etcd_pki_provisioner_password }}",
                    "x509_min_dur": s.cert_lifetime_min,
                    "x509_max_dur": s.cert_lifetime_max,
                    "x509_default_dur": s.cert_lifetime,
                    "x509_template": template,
                    "ssh": False,
                    "step_cli_executable": STEP,
                },
                **as_ca_user,
                "notify": "restart step-ca",
            },
            {"name": "step-ca restarted onto the provisioner", "meta": "flush_handlers"},
            {
                "name": "step-ca answers",
                "ansible.builtin.wait_for": {"host": ca.address, "port": s.ca_port},
            },
            {
                "name": "root fingerprint for the other hosts",
                "ansible.builtin.command": f"{STEP} certificate fingerprint {ca_root}",
                "register": "etcd_pki_fingerprint",
                "changed_when": False,
            },
        ],
    }
    hosts_play = {
        "name": "trust and certificates on every host",
        "hosts": f"{ETCD}:{CLIENTS}",
        "vars_files": ["secrets.yml"],
        "roles": [
            {
                "role": f"{COLLECTION}.step_bootstrap_host",
                "vars": {
                    "step_cli_install": False,
                    "step_cli_executable": STEP,
                    "step_bootstrap_ca_url": ca_url,
                    "step_bootstrap_fingerprint": (
                        f"{{{{ hostvars[{ca.name!r}].etcd_pki_fingerprint.stdout }}}}"
                    ),
                    "step_bootstrap_install_cert": False,
                    "step_bootstrap_users": [{"user": "root", "steppath": s.step_dir}],
                },
            }
        ],
        "tasks": [
            {
                "name": "ssl_dir",
                "ansible.builtin.file": {
                    "path": s.ssl_dir,
                    "state": "directory",
                    "owner": "root",
                    "group": "root",
                    "mode": "0755",
                },
            },
            {
                "name": "root certificate in ssl_dir",
                "ansible.builtin.copy": {
                    "src": step_root,
                    "remote_src": True,
                    "dest": s.trusted_root,
                    "owner": "root",
                    "group": "root",
                    "mode": "0644",
                },
            },
            {
                "name": "peer-ca.crt and client-ca.crt link to it",
                "ansible.builtin.file": {
                    "src": "root_ca.crt",
                    "dest": f"{s.ssl_dir}/{{{{ item }}}}",
                    "state": "link",
                },
                "loop": ["peer-ca.crt", "client-ca.crt"],
            },
            {
                "name": "one-time token per certificate, minted on the CA",
                f"{COLLECTION}.step_ca_token": {
                    "name": "{{ item.subject }}",
                    "san": "{{ item.sans }}",
                    "provisioner": s.ca_provisioner,
                    "provisioner_password": "{{ etcd_pki_provisioner_password }}",
                    "ca_url": ca_url,
                    "root": ca_root,
                    "return_token": True,
                    "step_cli_executable": STEP,
                },
                "delegate_to": ca.name,
                **({"throttle": throttle} if throttle else {}),
                "loop": "{{ etcd_pki_certs }}",
                "loop_control": {"label": "{{ item.subject }}"},
                "register": "etcd_pki_tokens",
                "no_log": True,
            },
            {
                "name": "certificate and key, the key made on the host",
                f"{COLLECTION}.step_ca_certificate": {
                    # No `san`: step refuses --san next to --token (the token holds the
                    # SANs), and so the module cannot notice when a host's SANs change.
                    "name": "{{ item.0.subject }}",
                    "crt_file": "{{ item.0.crt }}",
                    "key_file": "{{ item.0.key }}",
                    "token": "{{ item.1.token | trim }}",
                    "not_after": s.cert_lifetime,
                    **KEY_ARGS[s.key_type],
                    "ca_url": ca_url,
                    "root": step_root,
                    # Without it `step certificate verify` asks the system trust store,
                    # which does not hold this root: every run would re-issue.
                    "verify_roots": step_root,
                    "step_cli_executable": STEP,
                },
                "loop": "{{ etcd_pki_certs | zip(etcd_pki_tokens.results) | list }}",
                "loop_control": {"label": "{{ item.0.subject }}"},
                "no_log": True,  # each item holds its token: a failure would print it
            },
            {
                "name": "key owner and mode",
                "ansible.builtin.file": {
                    "path": "{{ item.key }}",
                    "owner": "{{ item.owner }}",
                    "group": "{{ item.owner }}",
                    "mode": "0400",
                },
                "loop": "{{ etcd_pki_certs }}",
                "loop_control": {"label": "{{ item.key }}"},
            },
            {
                "name": "certificate owner and mode",
                "ansible.builtin.file": {
                    "path": "{{ item.crt }}",
                    "owner": "root",
                    "group": "root",
                    "mode": "0644",
                },
                "loop": "{{ etcd_pki_certs }}",
                "loop_control": {"label": "{{ item.crt }}"},
            },
        ],
    }
    return [ca_play, hosts_play]


def secrets(root_password: str, provisioner_password: str) -> dict[str, str]:
    """The vars file with the two passwords (written 0600 by the runner)."""
    for value in (root_password, provisioner_password):
        if not value or any(c in value for c in "{}%\n"):
            raise ValueError("passwords must be non-empty, without braces, % or newlines")
    return {
        "etcd_pki_root_password": root_password,
        "etcd_pki_provisioner_password": provisioner_password,
    }


def ansible_cfg(forks: int, collections_path: str, callback_dir: str) -> str:
    """ansible.cfg: one fork per host (pyinfra works on all hosts at once; Ansible's
    default is 5), pipelining (the usual tuning: a module goes over the connection's
    stdin instead of as a file), the collection from ``collections_path`` and the
    bench's callback (which logs where ``$BENCH_ANSIBLE_LOG`` says)."""
    if forks < 1:
        raise ValueError("forks must be at least 1")
    return "\n".join(
        [
            "[defaults]",
            f"forks = {forks}",
            f"collections_path = {collections_path}",
            f"callback_plugins = {callback_dir}",
            f"callbacks_enabled = {CALLBACK}",
            "host_key_checking = False",
            "retry_files_enabled = False",
            "interpreter_python = /usr/bin/python3",
            "",
            "[connection]",
            "pipelining = True",
            "",
        ]
    )


def render(value: Any) -> str:
    """YAML text for ``value`` (JSON is a subset of YAML, which Ansible reads)."""
    return json.dumps(value, indent=2) + "\n"
