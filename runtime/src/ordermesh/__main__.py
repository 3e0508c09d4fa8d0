"""`python -m ordermesh new-service NAME`: the runtime's commands (ordermesh.scaffold)."""

import sys

from ordermesh.scaffold import main

sys.exit(main())
