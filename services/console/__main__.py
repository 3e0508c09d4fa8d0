"""`python -m services.console` runs the operator console."""

import asyncio

from services.console.main import main

asyncio.run(main())
