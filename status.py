"""Certificate status report: `pyinfra inventory.py status.py [--data status_dir=DIR]`.

Prints a table per host and certificate (subject, SANs, serial, not-after, time left,
share of the lifetime used, next run of the renewal timer, state) and writes the same
as reports/status.json (for monitoring) and reports/status.html (a self-contained page
with an expiry bar per certificate). Changes nothing on any host.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # found from any directory

from tasks.status import status_report

status_report()
