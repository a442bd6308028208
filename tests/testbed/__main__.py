"""``python -m tests.testbed``: the test bed's command line (see :mod:`tests.testbed.cli`)."""

import sys

from .cli import main

sys.exit(main())
