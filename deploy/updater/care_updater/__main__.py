import sys

from care_updater.cli import main

sys.exit(main())
