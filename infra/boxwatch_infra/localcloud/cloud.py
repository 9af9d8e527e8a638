"""The local cloud: moto_server + the stack from template.yaml + local IoT Core (broker, lifecycle
events, rules, shadow service) + schedules + HTTP APIs + phones, all on 127.0.0.1.

`LocalCloud` runs in the calling process (`boxwatch local up`); `LocalCloudProcess` runs it in a
child process and hands back its endpoints (the demo, the e2e tests and the latency run drive it
from outside, over loopback, as devices and phones would).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from boxwatch_infra.aws.ports import HOST

log = logging.getLogger("boxwatch.localcloud")


@dataclass
class LocalCloudConfig:
    moto_port: int = 0
    mqtt_port: int = 0
    iot_data_port: int = 0
    api_port: int = 0  # first HTTP API; further ones take ephemeral ports
    console_port: int = 0
    parameter_overrides: dict[str, Any] = field(default_factory=dict)
    schedule_scale: float = 1.0  # >1: schedules run that many times faster
    workers: int = 8
    state_dir: str = ""
    function_log: str = ""  # where the functions' stdout (powertools logs, metrics) goes; "" = state_dir


class LocalCloud:
    def __init__(self, config: LocalCloudConfig | None = None):
        self.config = config or LocalCloudConfig()
        self.state_dir = Path(self.config.state_dir or tempfile.mkdtemp(prefix="boxwatch-local-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.started = False
        self.console_stream = sys.stdout
        self._components: list[Any] = []

    def start(self) -> LocalCloud:
        from boxwatch_infra.aws.environ import FAKE_CREDENTIALS
        from boxwatch_infra.aws.template import Template
        from boxwatch_infra.localcloud.broker import IotBroker
        from boxwatch_infra.localcloud.functions import FunctionHost
        from boxwatch_infra.localcloud.httpapi import HttpApi
        from boxwatch_infra.localcloud.phones import Phones
        from boxwatch_infra.localcloud.queues import SqsPollers
        from boxwatch_infra.localcloud.rules import RulesRunner
        from boxwatch_infra.localcloud.scheduler import Scheduler
        from boxwatch_infra.localcloud.shadow_service import ShadowService
        from boxwatch_infra.localcloud.stack import MotoServer, deploy

        t0 = time.monotonic()
        cfg = self.config
        try:
            self.phones = Phones(cfg.console_port).start()
            self._components.append(self.phones)
            self.moto = MotoServer(cfg.moto_port, push_url=f"{self.phones.url}/push",
                                   log_path=self.state_dir / "moto.log").start()
            self._components.append(self.moto)
            template = Template(parameter_overrides=cfg.parameter_overrides)
            self.deployment = deploy(self.moto.url, template, work_dir=self.state_dir)
            self.broker = IotBroker(HOST, cfg.mqtt_port)
            self.shadow = ShadowService(self.moto.url, self.broker, template.region, cfg.iot_data_port).start()
            self._components.append(self.shadow)
            env = {**FAKE_CREDENTIALS, "AWS_REGION": template.region,
                   "AWS_DEFAULT_REGION": template.region, "AWS_ENDPOINT_URL": self.moto.url,
                   # botocore names iot-data "IoT Data Plane": AWS_ENDPOINT_URL_IOT_DATA_PLANE is the one it reads
                   "AWS_ENDPOINT_URL_IOT_DATA": self.shadow.url, "AWS_ENDPOINT_URL_IOT_DATA_PLANE": self.shadow.url,
                   "POWERTOOLS_TRACE_DISABLED": "true"}
            for k in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
                os.environ.pop(k, None)
            self._redirect_function_output()
            self.functions = FunctionHost(self.deployment, env, cfg.workers).load()
            self._components.append(self.functions)
            self.phones.trace_lookup = self.functions.trace.lookup
            self.rules = RulesRunner(self.deployment, self.functions)
            self.broker.hooks += [self.shadow.on_message, self.rules.on_message]
            self.broker.start()
            self._components.append(self.broker)
            self.apis: list[HttpApi] = []
            for i, logical in enumerate(self.deployment.resources_of_type("AWS::ApiGatewayV2::Api")):
                api = HttpApi(logical, self.deployment, self.functions, cfg.api_port if i == 0 else 0).start()
                self.apis.append(api)
                self._components.append(api)
            self._serve_console(template)
            self.queues = SqsPollers(self.deployment, self.functions).start()
            self._components.append(self.queues)
            self.scheduler = Scheduler(self.deployment, self.functions, cfg.schedule_scale).start()
            self._components.append(self.scheduler)
        except BaseException:
            self.stop()
            raise
        self.phones.info = self.info()
        self.phones.extra.update({
            "lifecycle": lambda: self.broker.lifecycle_log,
            "stats": self.stats,
        })
        self.phones.actions.update({
            "schedules": self.scheduler.run_now,
            "phone-numbers": self._register_phone,
            # shorter than the client's wait below: a long backlog answers "not yet", never a timeout
            # invocations, then what they queued for an event source (a sweep's parts), then theirs
            "drain": lambda _arg: {"drained": self.functions.drain(10) and self.queues.drain(10)
                                   and self.functions.drain(5)},
        })
        self.started_in_s = time.monotonic() - t0
        self.started = True
        return self

    def _serve_console(self, template: Any) -> None:
        """The operator console at <phones>/console/, calling the first HTTP API (CORS from this origin),
        with the local sign-in (`local:<sub>@<org>+operators`, no Cognito) and no basemap unless the
        BasemapTileUrl parameter names one."""
        from boxwatch_infra.aws.template import ROOT

        root = ROOT / "console"
        self.phones.console_root = root if root.is_dir() else None
        tile = str(self.config.parameter_overrides.get("BasemapTileUrl") or "")
        self.phones.console_config = {"api_url": self.apis[0].url if self.apis else "", "user_pool_id": "",
                                      "client_id": "", "region": template.region, "tile_url": tile or None,
                                      "local_sign_in": True}
        for api in self.apis:
            api.cors_origins.add(self.phones.url)

    @property
    def console_url(self) -> str:
        return f"{self.phones.url}/console/"

    def _register_phone(self, arg: str) -> dict[str, str]:
        number, _, client = arg.partition("=")
        self.phones.phone_numbers[number] = client
        return {number: client}

    def _redirect_function_output(self) -> None:
        """Handlers print JSON logs and EMF metrics on stdout, like in Lambda: to a file here."""
        path = Path(self.config.function_log) if self.config.function_log else self.state_dir / "functions.log"
        self.function_log = path
        self.console_stream = sys.stdout
        sys.stdout = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def info(self) -> dict[str, Any]:
        dep = self.deployment
        return {
            "region": dep.template.region,
            "stack": dep.stack_name,
            "moto": self.moto.url,
            "iot_data": self.shadow.url,
            "mqtt": {"host": HOST, "port": self.broker.port},
            "apis": {a.logical: a.url for a in self.apis},
            "console": self.phones.url,
            "ops_console": self.console_url,
            "outputs": dep.outputs,
            "physical": dep.physical,
            "function_env": {k: v.env for k, v in self.functions.functions.items()},
            "functions": sorted(self.functions.functions),
            "rules": self.rules.describe(),
            "schedules": self.scheduler.describe(),
            "routes": [a.describe() for a in self.apis],
            "local_only": dep.local_only,
            "stack_created_in_s": round(dep.created_in_s, 2),
            "state_dir": str(self.state_dir),
        }

    def stats(self) -> dict[str, Any]:
        return {"functions": self.functions.summary(), "rules_matched": dict(self.rules.matched),
                "rule_errors": dict(self.rules.errors), "schedules": self.scheduler.describe(),
                "event_sources": self.queues.describe(),
                "shadow": {"accepted": self.shadow.updates_accepted, "rejected": self.shadow.updates_rejected},
                "connected_clients": len(self.broker.connected_clients), "pushes": len(self.phones.pushes)}

    def stop(self) -> None:
        for comp in reversed(self._components):
            with contextlib.suppress(Exception):
                (comp.shutdown if hasattr(comp, "shutdown") and not hasattr(comp, "stop") else comp.stop)()
        self._components.clear()
        if sys.stdout is not self.console_stream:
            with contextlib.suppress(Exception):
                sys.stdout.close()
            sys.stdout = self.console_stream

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ------------------------------------------------------------------------- in a child process
def serve_child() -> int:
    """`python -m boxwatch_infra.localcloud.cloud CONFIG_JSON`: run the local cloud, write its info
    as one JSON line on stdout, stop when stdin closes or says `stop`."""
    config_doc = json.loads(sys.argv[1])
    proto = sys.stdout
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    cloud = LocalCloud(LocalCloudConfig(**config_doc))
    try:
        cloud.start()
    except BaseException as exc:
        log.exception("local cloud failed to start")
        proto.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        proto.flush()
        return 1
    proto.write(json.dumps({"info": cloud.info()}) + "\n")
    proto.flush()
    try:
        for line in sys.stdin:  # EOF when the parent goes away
            if line.strip() == "stop":
                break
    finally:
        cloud.stop()
    return 0


class LocalCloudProcess:
    """`with LocalCloudProcess() as lc: lc.info['mqtt']['port'] ...` - everything stops on exit."""

    def __init__(self, config: LocalCloudConfig | None = None):
        self.config = config or LocalCloudConfig()
        self._own_dir = not self.config.state_dir  # a temp dir of ours is removed on stop
        if not self.config.state_dir:
            self.config.state_dir = tempfile.mkdtemp(prefix="boxwatch-local-")
        Path(self.config.state_dir).mkdir(parents=True, exist_ok=True)
        self.info: dict[str, Any] = {}
        self._proc: subprocess.Popen[str] | None = None

    @property
    def log_path(self) -> Path:
        return Path(self.config.state_dir) / "local-cloud.log"

    def start(self, timeout: float = 120.0) -> LocalCloudProcess:
        err = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "boxwatch_infra.localcloud.cloud", json.dumps(asdict(self.config))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
        )
        err.close()
        assert self._proc.stdout is not None
        ready = threading.Event()
        result: dict[str, Any] = {}

        def read() -> None:
            assert self._proc is not None and self._proc.stdout is not None
            line = self._proc.stdout.readline()
            result.update(json.loads(line) if line.strip() else {"error": "exited"})
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"local cloud did not start in {timeout:.0f} s (see {self.log_path})")
        if "error" in result:
            self.stop()
            raise RuntimeError(f"local cloud failed: {result['error']} (see {self.log_path})")
        self.info = result["info"]
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(Exception):
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.close()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if self._own_dir:
            shutil.rmtree(self.config.state_dir, ignore_errors=True)

    def __enter__(self) -> LocalCloudProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---------------------------------------------------------------- console
    def console(self, path: str, method: str = "GET", timeout: float = 30.0) -> Any:
        req = urllib.request.Request(self.info["console"] + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def pushes(self, since: int = 0) -> tuple[list[dict[str, Any]], int]:
        doc = self.console(f"/inbox?since={since}")
        return doc["pushes"], doc["next"]

    def drain(self) -> bool:
        return bool(self.console("/drain/all", "POST", timeout=60).get("drained"))

    def client_env(self) -> dict[str, str]:
        """What a process needs to talk to this local cloud with boto3 / pynamodb."""
        return {"AWS_ENDPOINT_URL": self.info["moto"], "AWS_ENDPOINT_URL_IOT_DATA": self.info["iot_data"],
                "AWS_ENDPOINT_URL_IOT_DATA_PLANE": self.info["iot_data"],
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": self.info["region"], "AWS_DEFAULT_REGION": self.info["region"]}


if __name__ == "__main__":
    sys.exit(serve_child())
