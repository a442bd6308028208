"""The Ansible collection for Smallstep (``maxhoesel.smallstep``) as the bench's peer:
``generate`` (the playbook, inventory and ansible.cfg, pure), ``runner`` (its venv, one
timed ``ansible-playbook``, the callback log's counts), ``callback_plugins/bench_log.py``
(loaded by ansible-playbook itself)."""
