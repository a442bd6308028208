"""``python -m bench``: run the benchmark (see the ``bench`` package's docstring)."""

import os
import signal
import sys

# Before anything imports tests.testbed (which reads it once): the benchmark recreates
# containers, so it never runs on the default bed. Here, not in the package, so that
# importing bench's modules (the unit tests do) changes no one's environment.
os.environ.setdefault("ETCD_PKI_BED", "bench")

from tests import testbed as tb  # noqa: E402

from .cli import main  # noqa: E402
from .measure import BenchError, progress  # noqa: E402

# Killed (SIGTERM): unwind normally, so --json still gets what was measured.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
try:
    sys.exit(main())
except (BenchError, tb.TestbedError) as e:
    progress(f"FAILED: {e}")
    sys.exit(1)
