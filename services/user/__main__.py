"""`python -m services.user` runs the user service."""

import asyncio

from services.user.main import main

asyncio.run(main())
