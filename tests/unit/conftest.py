"""Unit tests: no I/O, no processes, no sockets; pure functions and objects only."""
