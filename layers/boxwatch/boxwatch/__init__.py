"""boxwatch domain package: device contract, registry, alarm correlation, network status,
commands and notification rendering. Shipped to Lambda as the `DomainLayer`.

Nothing here reads `os.environ` or the wall clock: configuration arrives as `Settings`, time as
event timestamps.
"""

__version__ = "0.1.0"
