"""`python -m services.inventory` runs the inventory service."""

import asyncio

from services.inventory.main import main

asyncio.run(main())
