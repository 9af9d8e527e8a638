"""`python -m boxwatch_infra.bench [--quick] [--out bench/]`: what an alarm costs, how it scales,
how fast it arrives. See `__main__.py` for the suite and `report.py` for the outputs.

On the sandbox: `per_alarm`, `storm`, `sweep` (fleets from `fleet`; the Scan `baseline`),
`geopeer` (the neighbour lookup against dynamodbgeo), `coldstart`; counted by `recorder`, costed
by `capacity`; `connection` is a bench-only pynamodb patch. `e2e` runs the local cloud's latency
script. moto's speed-ups are the core's (`boxwatch_infra.aws.moto_patches`).
"""
