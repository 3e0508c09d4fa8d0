"""`python -m ordermesh.gateway.ratelimit` runs the gateway's rate-limit service."""

import asyncio

from ordermesh.gateway.ratelimit.main import main

asyncio.run(main())
