"""`python -m chassis new-service NAME`: the runtime's commands (chassis.scaffold)."""

import sys

from chassis.scaffold import main

sys.exit(main())
