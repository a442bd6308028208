"""Our deploy next to other tools doing the same job on the same test bed (issue 24).

``python -m bench --peers`` (``make bench BENCH_ARGS=--peers``) runs, at each size,
our deploy and the peer on fresh containers of the same bed, paired, and checks that
both really issued every certificate (``verify``). Peers:

* ``ansible``: the Ansible collection for Smallstep (``maxhoesel.smallstep``): a
  playbook and inventory generated for the bed's hosts (``ansible.generate``), run with
  ``ansible-playbook`` from a venv of its own (``ansible.runner``), never a dependency
  of the deploy.

Our side runs ``bench/peers/ours_pki.py``: deploy.py's phases up to the end of
issuance (see that file), so both do the same job.
"""
