"""A real MQTT broker on 127.0.0.1 for local runs and tests: mosquitto, as a child process.

mosquitto (Debian package, installed by `make install`) routes AWS-style `$aws/...` topics and
thousands of connections; amqtt 0.12 stops routing after a publish on a `$` topic. `stop()` is a
real broker death: the OS closes every client connection at once, as when a broker host fails.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from boxwatch_infra.aws.ports import HOST, free_port, wait_listening

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next((p for p in MOSQUITTO_PATHS if Path(p).exists()), None)
    if found is None:
        raise RuntimeError("mosquitto is not installed: run `make install` (apt-get install mosquitto)")
    return found


class LocalBroker:
    """`with LocalBroker() as b: ... b.port` - listens on 127.0.0.1 only, dies on exit."""

    def __init__(self, port: int | None = None):
        self.host = HOST
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="boxwatch-mqtt-"))

    def start(self, timeout: float = 10.0) -> LocalBroker:
        conf = self._dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_inflight_messages 100\n"
            "max_queued_messages 100000\n"
            "log_dest none\n"
        )
        self._proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode} (port {self.port} in use?)")
            if wait_listening(self.port, 0.2, self.host):
                return self
        self.stop()
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(5)
            self._proc = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
