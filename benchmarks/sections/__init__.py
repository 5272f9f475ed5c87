"""The benchmark's sections, one module each: what it measures, and with which floor.

`bench.py` runs them in this order (`--only` picks some) and stores what each
`measure(...)` returns under its name in results.json; `harness/report.py` renders it.

  noop      a no-op `reconcile --once` over N managed stopped domains vs floors/noop.py
  converge  a cold converge of N running guests and a change pass vs floors/converge.py
  validate  `reconcile validate` of many manifests, next to floors/parse.py
  service   the service's latencies, idle CPU and RSS (service_latency.py)
"""

SECTIONS = ("noop", "converge", "validate", "service")
