"""Contract tests: the contracts in proto/ and the gates that protect them (buf, generated code).

They run the real buf binary on copies of the contracts; nothing is faked.
"""
