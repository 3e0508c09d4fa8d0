"""The services of the system: one package each, with the same file names (see README.md)."""
