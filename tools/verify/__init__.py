"""`make verify`: the original system's four claims, proven against a running deployment.

Against `make up`, the compose stack or any gateway with an admin account, it drives orders at a
fixed rate for a set time, each by one of many customers, while it breaks the system on purpose
(one instance of every service killed in turn where it can reach them: `make up`'s processes,
the compose project's containers, as `python -m tools.chaos` does; and, anywhere with fault
switches, each service of an order's flow failing for a while in turn by its switches, turned
through the operator API), then reconciles what it sent with what the system did, and prints
each claim with its measured value, PASS or FAIL:

- availability: orders answered / sent (the floor 99.9 %);
- zero loss: every accepted order decided (APPROVED or REJECTED), and its customer notified of
  it exactly once; every message the order's flow published (each service's outbox, read
  through the operator API by the order's correlation id) processed exactly once by each
  service subscribed to it (their inboxes), none dead-lettered or parked; the stock taken and
  the credit held those of the approved orders;
- message processing: a message's age when processed (from its outbox row to its consumer's
  commit: `ordermesh_message_age_seconds`), p50 and p99 over the run, from Prometheus (under
  50 ms);
- instances: how many instances of each service served calls or messages during the run, of
  those registered.

It writes a report, an HTML page with pictures (orders answered and failed per second with the
kills marked; the orders' and the messages' latency percentiles over time), and exits 1 when a
claim fails. The modules: `api` (the gateway's REST API as customers and the admin call it),
`orders` (the customers and the orders at a fixed rate), `faults` (what it breaks and when),
`claims` (the reconciliation), `report` (the page).
"""
