#!/usr/bin/env python3
"""Entry point for the stdlib-only updater: ``python3 -I run_updater.py COMMAND``.

``-I`` (isolated mode) keeps the project's virtual environment, PYTHONPATH and
user site-packages out, so the updater keeps working when a release is broken.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from care_updater.cli import main

if __name__ == "__main__":
    sys.exit(main())
