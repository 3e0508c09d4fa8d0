"""User service: accounts, sessions and tokens, profiles, notification preferences, credit."""
