"""Operator console: the web pages admins run the system from (the live system, one request's
story, dead letters and parked messages, stuck sagas, fault switches), served at /console behind
the gateway."""
