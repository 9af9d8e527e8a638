"""The local cloud: the whole system on one machine, from template.yaml (docs/local-cloud.md).

The emulation core (`boxwatch_infra.aws`) plus what makes it a cloud: moto_server in a child
process with the stack created through its CloudFormation API (`stack`, `moto_proc`), an MQTT
broker with AWS IoT's lifecycle events (`broker`), the rules engine (`rules`), the functions on a
thread pool (`functions`), schedules (`scheduler`), the shadow service and iot-data API
(`shadow_service`), the command HTTP API (`httpapi`), the phones (`phones`), the HTTP plumbing
they share (`servers`), the process that runs it all (`cloud`), provisioning (`seed`), and what
runs on it (`demo`, `latency`, `package`, `cli`).
"""
