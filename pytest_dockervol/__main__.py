"""``python -m pytest_dockervol``: the leftovers command."""

from __future__ import annotations

import sys

from ._runs.cli import main

sys.exit(main())
