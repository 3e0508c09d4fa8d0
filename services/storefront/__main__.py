"""`python -m services.storefront` runs the storefront."""

import asyncio

from services.storefront.main import main

asyncio.run(main())
