"""`python -m services.auth` runs the gateway's auth service."""

import asyncio

from services.auth.main import main

asyncio.run(main())
