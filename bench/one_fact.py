"""The least a deploy can do: read one of pyinfra's own facts on each host, nothing else.

The bench (bench/scenarios.py) times it next to the deploy's no-change re-run: any deploy
that checks each host's state runs at least this (connect, one command per host), so its
ratio of 27 to 4 hosts is the floor the re-run's ratio can reach with this connector on
this machine.
"""

from pyinfra import host
from pyinfra.facts.server import Hostname

host.get_fact(Hostname)
