"""Notification service: email, SMS and push notifications, as each user prefers."""
