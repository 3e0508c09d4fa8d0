"""`python -m services.order` runs the order service."""

import asyncio

from services.order.main import main

asyncio.run(main())
