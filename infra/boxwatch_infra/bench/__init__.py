"""`python -m boxwatch_infra.bench [--quick] [--out bench/]`: what an alarm costs, how it scales,
how fast it arrives (issue 7). See `__main__.py` for the suite and `report.py` for the outputs."""
