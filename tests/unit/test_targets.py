"""Who a push goes to (notify.targets_of), without AWS: every enabled device of the bound client,
the binding's SMS number and topic, and the one target of a binding of the older form."""

from __future__ import annotations

from boxwatch.bindings import binding_from_snapshot, snapshot_of
from boxwatch.devices import Device, device_id_for
from boxwatch.models import BindingItem
from boxwatch.notify import targets_of


def device(client: str, token: str, enabled: bool = True, locale: str | None = None) -> Device:
    return Device(client, device_id_for("fcm", token), "fcm", f"arn:aws:sns:us-east-1:1:endpoint/GCM/a/{token}",
                  locale, enabled)


def test_each_enabled_device_and_the_bindings_own_targets_are_one_target_each() -> None:
    # Given alice with two live phones and a dead one, an SMS number and a topic on her binding
    binding = BindingItem("BX-1", "alice", locale="zh-CN", sms="+8613800138000",
                          topic="arn:aws:sns:us-east-1:1:boxwatch-client-ops")
    phones = [device("alice", "tok-1", locale="en"), device("alice", "tok-2"), device("alice", "tok-3", False)]
    # When her targets are resolved
    targets = targets_of(binding, {"alice": phones, "bob": [device("bob", "tok-9")]})
    # Then each live phone once (its own locale when it sent one), the number, the topic; no dead phone, no bob
    assert [(t.kind, t.key, t.locale) for t in targets] == [
        ("endpoint", f"alice/{phones[0].device_id}", "en"),
        ("endpoint", f"alice/{phones[1].device_id}", "zh-CN"),
        ("sms", "alice/sms", "zh-CN"),
        ("topic", "alice/topic", "zh-CN"),
    ]


def test_a_binding_of_the_older_form_keeps_its_target_keyed_by_the_client() -> None:
    # the key its version recorded in `sent`, so a retry across the upgrade sends nothing twice
    binding = BindingItem("BX-1", "bob", target="arn:aws:sns:us-east-1:1:endpoint/GCM/a/x", target_kind="endpoint")
    assert [(t.kind, t.key, t.address) for t in targets_of(binding, {})] == [
        ("endpoint", "bob", "arn:aws:sns:us-east-1:1:endpoint/GCM/a/x")]


def test_a_client_without_devices_or_numbers_has_no_target() -> None:
    assert targets_of(BindingItem("BX-1", "carol"), {"carol": []}) == []


def test_cell_entry_snapshots_of_both_forms_read_back_as_bindings() -> None:
    new = BindingItem("BX-1", "alice", locale="en", sms="+8613800138000", role="manager")
    back = binding_from_snapshot("BX-1", snapshot_of(new))
    assert (back.client_id, back.locale, back.sms, back.role, back.target) == ("alice", "en", "+8613800138000",
                                                                              "manager", None)
    # an entry written by the older version: [client, target, kind, locale]
    old = binding_from_snapshot("BX-1", ["bob", "+8613900139000", "sms", "zh-CN"])
    assert (old.client_id, old.target, old.target_kind, old.sms) == ("bob", "+8613900139000", "sms", None)
