"""`python -m ordermesh.gateway.auth` runs the gateway's auth service."""

import asyncio

from ordermesh.gateway.auth.main import main

asyncio.run(main())
