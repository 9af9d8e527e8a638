"""Presence records offline episodes exactly, whatever order AWS delivers a box's lifecycle events in
and however often (docs/claims.md "Fourth alarm": an episode [s, e) ends at the box's connect with
the smallest higher version that has arrived)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boxwatch import network
from boxwatch.models import BoxItem, OfflineEntry, PresenceLogItem
from boxwatch.registry import BoxSpec, import_boxes
from boxwatch_infra.aws.events import lifecycle_event
from boxwatch_infra.sandbox import Sandbox
from tests.integration.faultkit import T0

BOX_IDS = (f"EP-{i:04d}" for i in itertools.count())


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 6), st.randoms(use_true_random=False), st.booleans())
def test_episode_ends_and_status_hold_under_any_delivery_order(sb: Sandbox, n: int, rnd: random.Random,
                                                               shared_numbers: bool) -> None:
    # Given a box with n sessions: connect, then disconnect (one version each, or one per session)
    box = next(BOX_IDS)
    list(import_boxes([BoxSpec(id=box, name=box, lat=39.9, lng=116.4)], sb.settings))
    events = []
    for k in range(n):
        v_up, v_down = (k + 1, k + 1) if shared_numbers else (2 * k + 1, 2 * k + 2)
        events.append(("connected", v_up, T0 + k * 100_000))
        events.append(("disconnected", v_down, T0 + k * 100_000 + 50_000))
    # When they arrive shuffled, some twice, each at its position in the shuffled order
    deliveries = events + rnd.sample(events, k=len(events) // 2)
    rnd.shuffle(deliveries)
    for i, (kind, version, ts) in enumerate(deliveries):
        now = T0 + 10_000_000 + i * 1000
        sb.now_ms = now
        doc = lifecycle_event(box, kind, ts, version, 1, None if kind == "connected" else "CONNECTION_LOST")
        sb.publish_mqtt(f"$aws/events/presence/{kind}/{box}", doc, "", now)
    # Then every disconnect is one episode, ended by the connect with the smallest higher version
    connects = sorted((v, ts) for kind, v, ts in events if kind == "connected")
    logged = [r for r in PresenceLogItem.query(f"BOX#{box}", PresenceLogItem.sk.startswith("V#")) if r.kind == "D"]
    entries = [OfflineEntry.get(r.offline_pk, r.offline_sk) for r in logged]
    got = {int(e.version): (int(e.offline_at), None if e.ended_at is None else int(e.ended_at)) for e in entries}
    want = {v: (ts, next((c_ts for c_v, c_ts in connects if c_v > v), None))
            for kind, v, ts in events if kind == "disconnected"}
    assert got == want
    # and the box holds the newest event (a disconnect beating a connect at an equal version)
    item = BoxItem.get(box)
    kind, version, ts = max(events, key=lambda e: (e[1], e[0] == "disconnected"))
    assert (bool(item.online), int(item.presence_version), int(item.status_since)) == (
        kind == "connected", version, ts)
    assert int(item.last_connect_version) == max(v for v, _ in connects)


def test_a_connect_racing_a_disconnect_still_ends_its_episode(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a box read online at its last connect (so a connect may skip looking for open episodes)
    box = next(BOX_IDS)
    list(import_boxes([BoxSpec(id=box, name=box, lat=39.9, lng=116.4)], sb.settings))

    def deliver(kind: str, version: int, ts: int) -> None:
        sb.now_ms = ts
        doc = lifecycle_event(box, kind, ts, version, 1, None if kind == "connected" else "CONNECTION_LOST")
        sb.publish_mqtt(f"$aws/events/presence/{kind}/{box}", doc, "", ts)

    deliver("connected", 1, T0)
    as_read = BoxItem.get(box)
    # When a disconnect is applied between that read and the reconnect's transaction
    deliver("disconnected", 2, T0 + 10_000)
    monkeypatch.setattr(network, "get_box", lambda box_id: as_read)
    event = network.PresenceEvent.model_validate(
        {**lifecycle_event(box, "connected", T0 + 20_000, 3, 2), "received_at": T0 + 20_000})
    result = network.record_presence(event, sb.settings, sb.client("sns"), network.third_alarm_idempotency(sb.settings))
    # Then the reconnect is applied and the episode it ends is ended
    assert result.status == "applied"
    (row,) = [r for r in PresenceLogItem.query(f"BOX#{box}") if r.kind == "D"]
    assert int(OfflineEntry.get(row.offline_pk, row.offline_sk).ended_at) == T0 + 20_000
