"""The smart distribution box: electrical model, detector, MQTT agent, fleet, AWS provisioning.

Lives with the tooling, not in the Lambda layer: it is the other end of docs/device-contract.md.
"""
