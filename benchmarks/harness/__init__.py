"""The machinery that `benchmarks/bench.py` and its sections share.

`runs` (timed child processes, their checks, the bytecode cache), `host` (the libvirt host
seen through the benchmark's `bench-<8 hex>-` prefix, and the cleanup), `context` (what a
section is given), `machine` (the machine and the code measured), `profiles` (py-spy),
`report` (RESULTS.md) and `plot` (time_vs_n.png). Nothing here knows a section's numbers
except `report` and `plot`, which read them back from results.json.
"""
