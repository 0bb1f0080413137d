"""``python -m coaptcp.cli``: the same as ``coaptcp-client``."""

import sys

from coaptcp.cli.main import main

sys.exit(main())
