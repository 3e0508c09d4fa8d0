"""`python -m services.ratelimit` runs the gateway's rate-limit service."""

import asyncio

from services.ratelimit.main import main

asyncio.run(main())
