"""Developer and operator tooling for boxwatch: replay, invoke, local cloud, device agent, benchmarks.

Not shipped in the Lambda layer (that is `boxwatch`, under layers/boxwatch).
"""
