"""`python -m services.notification` runs the notification service."""

import asyncio

from services.notification.main import main

asyncio.run(main())
