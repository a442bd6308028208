"""Benchmark the deploy on the Docker test bed: `make bench [BENCH_ARGS="--quick ..."]`, or

    .venv/bin/python -m bench [--quick] [--json FILE] [--keep] [--connector ssh]
                              [--install-source controller] [--fresh-runs N] [--reruns N]
                              [--scale-runs N] [--issuance-runs N] [--per-host N]
                              [--peers [--peer-sizes 4,11,27] [--peer-pairs N]
                                       [--peer-reruns N]]

from the repository root (the bench imports the test bed as ``tests.testbed``).

What it measures (wall time of the whole `pyinfra -y INVENTORY deploy.py` process, from
start to exit; docker connector as the e2e tests run it, unless `--connector ssh`; each
host downloads step/step-ca from the bed's HTTP mirror, as hosts download from GitHub
with the default `install_source`, unless `--install-source controller` uploads them):

* fresh deploy of the 4-host cluster (3 etcd members, one of them the CA, 1 client) on
  brand-new containers: CA, certificates, renewal units, etcd;
* no-change re-run of it: wall time, and the commands pyinfra executed on each host;
* adding one etcd member: `testbed add etcd-k8s-4`, then the deploy with
  `--limit @docker/<container>` (commands on other hosts, e.g. token minting on the CA,
  are counted for those hosts);
* scaling: 3 etcd members plus 8 and 24 client hosts (11 and 27 hosts; the 1-client case
  is the 4-host cluster): fresh deploy and re-run, and the ratio to the 4-host case,
  each run against a 4-host run made just before it (the machine's speed drifts);
* the floor of a re-run at those sizes: `bench/one_fact.py`, a deploy file that reads one
  of pyinfra's own facts on each host and does nothing else, paired the same way. A
  deploy that checks each host runs at least that, so its ratio bounds the re-run's;
* step-ca issuance rate: from 3 hosts at once, 20 token+certificate requests each. The
  tokens are minted on the CA node as the deploy mints them (`tasks.certs.mint_command`,
  one command per host) and piped straight into `step ca certificate` on the requesting host
  (docker exec | docker exec): no password, key or token is written or printed outside
  the containers. Also measured: minting alone (tokens discarded inside the CA).

`--peers` runs only the comparison with the Ansible collection for Smallstep
(bench/peers/): at each of `--peer-sizes` (4,11,27), our deploy up to the end of
issuance and the collection's playbook doing the same job, each on fresh containers,
paired; fresh run, `--peer-reruns` no-change re-runs, and a check with openssl on the
hosts that both issued every certificate. Ansible comes from PyPI into .venv-peers.

`--connector ssh` runs every deploy over SSH (inventory_ssh.py, the same containers)
instead of one `docker exec` per command: the per-command cost differs a lot.

Counting commands: every deploy runs through bench/pyinfra_timed.py, which is the
pyinfra CLI plus a log of every call of pyinfra's host API (`run_shell_command`,
`put_file`, `get_file`), with the operation and fact it belongs to and its duration.
All connectors go through that API, so the count does not depend on log formats.
The same log gives the "where the time goes" breakdown printed after the table.

The bed instance is `$ETCD_PKI_BED`, or `bench` when unset (never the default bed: the
benchmark recreates containers). Containers are removed at the end unless `--keep`.
Logs of every run: .testbed/bench-logs/<instance>/. Timings are for this machine and load;
they belong here, never in tests.

Modules: ``measure`` (settings, one timed pyinfra run, CPU accounting), ``scenarios``
(what is run), ``report`` (the table, the JSON), ``cli`` (options and the order of it all),
``peers`` (the comparison with other tools).
"""
