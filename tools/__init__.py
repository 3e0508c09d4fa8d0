"""Repository tooling: contract generation and the breaking-change gate."""
