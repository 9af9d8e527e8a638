"""The local cloud (issue 6), brought up once per session on ephemeral loopback ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from boxwatch_infra.localcloud.cloud import LocalCloudConfig, LocalCloudProcess


@pytest.fixture(scope="session")
def local_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloudProcess]:
    state = tmp_path_factory.mktemp("local-cloud")
    # schedules 20x faster: the offline sweep and command expiry run every 3 s; every incident's
    # warnings fan out to OutageNotify (through the parts queue), the path of a city blackout
    cfg = LocalCloudConfig(state_dir=str(state), schedule_scale=20.0,
                           parameter_overrides={"SweepFanOutMembers": 2})
    with LocalCloudProcess(cfg) as lc:
        yield lc


@pytest.fixture
def cloud_env(local_cloud: LocalCloudProcess, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """This test process's AWS SDK points at the local cloud."""
    for k, v in local_cloud.client_env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    return local_cloud.info
