"""boxwatch: the product's domain package, shipped to Lambda as the `DomainLayer`.

- the edge: `events` (what handlers receive, and `parse`), `runtime` (the handlers' plumbing),
  `errors`, `deadletter` (refused input), `settings`, `contract` (device contract constants);
- storage: `models` (pynamodb tables), `idempotency` (powertools records), `bindings` (a box,
  its clients, who may see it), `registry` (registering and binding, validated), `changes` (what
  the operators' console reads: change log, organisation alarm log);
- the rules: `alarms` (first/second alarm, hold-down), `network` (presence, third alarm), `outage`
  (fourth alarm), `due` (work left for a time), `power_off` (the command lifecycle) with `shadow`
  (the device shadow) and `views` (what a phone reads);
- around them: `geo` (H3 cells, distances), `notify` (pushes, SMS), `bounds` (untrusted text).

Nothing here reads `os.environ` or the wall clock: configuration arrives as `Settings` (built by
the handler from its environment), time as event timestamps.
"""

__version__ = "0.1.0"
