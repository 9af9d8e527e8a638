"""The AWS emulation core: each AWS behaviour boxwatch depends on, written once.

Both emulators are built on it: the in-process `Sandbox` (this core + moto in-process + a virtual
clock; tests, replay, benchmarks) and the local cloud (this core + moto_server, sockets, processes
and the wall clock; `localcloud/`). Nothing here opens a socket to serve, starts a process or
reads the clock to decide what happens; nothing here imports the rest of `boxwatch_infra`.

| module | what |
|---|---|
| `template` | template.yaml: parameters, the one intrinsic-function resolver, functions, tables, SAM translation |
| `lambda_runtime` | a template function's handler in this process: code, environment, context |
| `lambda_async` | Lambda's asynchronous invocation: retries, OnFailure record; IoT rule error actions |
| `iot_rules` | the IoT rules SQL boxwatch uses, evaluated as AWS IoT does |
| `shadow` | what AWS IoT publishes after an accepted shadow update (delta, documents) |
| `events` | one factory per AWS event type (scheduled, lifecycle, HTTP API) and the `rate()` parser |
| `moto_patches` | moto speed-ups that keep its answers (partition-local queries, serializer bypass) |
| `environ` | environment patching and moto's fake credentials |
| `ports` | loopback ports: `free_port`, `wait_listening` |
"""
