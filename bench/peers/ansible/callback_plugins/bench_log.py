"""Ansible callback for the bench: one JSON line per task start and per host result.

Loaded by the peer benchmark's ansible.cfg (``callbacks_enabled = bench_log``); writes
to ``$BENCH_ANSIBLE_LOG`` (nothing when unset). Records:

* ``{"k": "task", "task", "action", "t"}`` when a task starts;
* ``{"k": "result", "host", "ran_on", "task", "action", "status", "changed", "t"}``
  for every host's result (``status``: ok, failed, skipped, unreachable; ``ran_on``
  is the delegated host for ``delegate_to`` tasks, else ``host``); a loop gives one
  record per item (``"item": true``), and its summary record is left out;
* ``{"k": "stats", "hosts": {host: {"ok", "changed", "failures", ...}}}`` at the end
  (Ansible's PLAY RECAP).

Nothing of a result's values is written (tokens and passwords stay out of the log).
This file runs inside ansible-playbook, from the peer's own venv.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: bench_log
type: aggregate
short_description: the bench's JSON lines log of tasks and results
description: Writes one JSON line per task and host result to $BENCH_ANSIBLE_LOG.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_log"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        path = os.environ.get("BENCH_ANSIBLE_LOG")
        self._log = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def _write(self, record: dict) -> None:
        if self._log:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self._write({"k": "task", "task": task.get_name(), "action": task.action, "t": time.time()})

    def v2_playbook_on_handler_task_start(self, task) -> None:
        self.v2_playbook_on_task_start(task, False)

    def _result(self, result, status: str, item: bool = False) -> None:
        values = result._result
        if not item and "results" in values:
            return  # a loop's summary: its items were logged one by one
        host = result._host.get_name()
        delegated = values.get("_ansible_delegated_vars") or {}
        self._write(
            {
                "k": "result",
                "host": host,
                "ran_on": delegated.get("ansible_delegated_host") or host,
                "task": result._task.get_name(),
                "action": result._task.action,
                "status": status,
                "changed": bool(values.get("changed")),
                "item": item,
                "t": time.time(),
            }
        )

    def v2_runner_on_ok(self, result) -> None:
        self._result(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._result(result, "failed")

    def v2_runner_on_skipped(self, result) -> None:
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result) -> None:
        self._result(result, "unreachable")

    def v2_runner_item_on_ok(self, result) -> None:
        self._result(result, "ok", item=True)

    def v2_runner_item_on_failed(self, result) -> None:
        self._result(result, "failed", item=True)

    def v2_runner_item_on_skipped(self, result) -> None:
        self._result(result, "skipped", item=True)

    def v2_playbook_on_stats(self, stats) -> None:
        hosts = {h: stats.summarize(h) for h in sorted(stats.processed)}
        self._write({"k": "stats", "hosts": hosts, "t": time.time()})
