"""``python -m bench``: run the benchmark (see the ``bench`` package's docstring)."""

import signal
import sys

from tests import testbed as tb

from .cli import main
from .measure import BenchError, progress

# Killed (SIGTERM): unwind normally, so --json still gets what was measured.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
try:
    sys.exit(main())
except (BenchError, tb.TestbedError) as e:
    progress(f"FAILED: {e}")
    sys.exit(1)
