"""Developer and operator tooling for boxwatch: everything that is not shipped to Lambda (the
product is `boxwatch`, under layers/boxwatch, and the handlers under functions/).

Layered bottom-up: a module imports only from its own package and from lower layers, never the
other way, and the product never imports the tooling (tests/unit/test_import_graph.py):

| layer | package | what |
|---|---|---|
| 0 | `aws/` | the AWS emulation core: each AWS behaviour boxwatch depends on, once |
| 1 | `sandbox` | the core on moto in-process, with a virtual clock (tests, replay, benchmarks) |
| 1 | `deployed` | a deployed stack as the SDK sees it: outputs, settings |
| 1 | `mqtt_broker` | mosquitto as a child process (device tests, fleet bench) |
| 1 | `dlq` | dead letters back through the handlers |
| 2 | `replay/` | scenarios in virtual event time on the sandbox, with plugins |
| 2 | `device/` | the smart distribution box: model, detector, MQTT agent, fleet, provisioning |
| 3 | `localcloud/` | the core on moto_server, with an MQTT broker, HTTP servers, processes, the wall clock |
| 4 | `bench/` | what an alarm costs, how it scales, how fast it arrives |
| 5 | `cli`, `commands/`, `*/cli.py` | the `boxwatch` console command |
"""
