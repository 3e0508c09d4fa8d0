"""Contract tests: the contracts in proto/, the gates that protect them (buf, generated code),
and the running services held to them.

They run the real buf binary on copies of the contracts, and the real services (the session's
system) for the RPCs and events; nothing is faked.
"""
