"""Box registry and bindings on moto: cells follow coordinates, unknown boxes are never guessed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from boxwatch.bindings import bindings_of_box, boxes_of_client, is_bound
from boxwatch.errors import UnknownBox
from boxwatch.geo import cell_of
from boxwatch.models import BoxItem
from boxwatch.registry import BindingSpec, BoxSpec, bind, import_bindings, register_box
from boxwatch_infra.cli import main
from boxwatch_infra.sandbox import Sandbox


def test_registering_and_moving_a_box_updates_its_cells() -> None:
    with Sandbox() as sb:
        # Given a registered box
        register_box(BoxSpec(id="BX-1", name="A", lat=39.98, lng=116.31), sb.settings)
        # When it is moved 3 km east
        register_box(BoxSpec(id="BX-1", name="A", lat=39.98, lng=116.345), sb.settings)
        # Then its cells are those of the new place
        box = BoxItem.get("BX-1")
        assert box.alarm_cell == cell_of(39.98, 116.345, sb.settings.alarm_res)
        assert box.area_cell == cell_of(39.98, 116.345, sb.settings.area_res)
        assert box.alarm_cell != cell_of(39.98, 116.31, sb.settings.alarm_res)


def test_bad_box_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        BoxSpec(id="BX-1", name="A", lat=1, lng=1, timezone="Mars/Olympus")
    with pytest.raises(ValueError):
        BoxSpec(id="BX-1", name="A", lat=91, lng=1)
    with pytest.raises(ValueError):
        BoxSpec(id="BX 1", name="A", lat=1, lng=1)


def test_bindings_need_a_registered_box() -> None:
    with Sandbox() as sb:
        register_box(BoxSpec(id="BX-1", name="A", lat=39.98, lng=116.31), sb.settings)
        bind(BindingSpec(client_id="alice", box_id="BX-1", target="arn:aws:sns:us-east-1:1:endpoint/GCM/a/1"))
        with pytest.raises(UnknownBox):
            bind(BindingSpec(client_id="alice", box_id="BX-404", target="arn:aws:sns:us-east-1:1:endpoint/GCM/a/1"))
        assert [b.client_id for b in bindings_of_box("BX-1")] == ["alice"]
        assert [b.box_id for b in boxes_of_client("alice")] == ["BX-1"]
        assert is_bound("alice", "BX-1") and not is_bound("bob", "BX-1")


def test_bulk_bindings_need_every_box_registered_and_write_them_all() -> None:
    with Sandbox() as sb:
        register_box(BoxSpec(id="BX-1", name="A", lat=39.98, lng=116.31), sb.settings)
        register_box(BoxSpec(id="BX-2", name="B", lat=39.99, lng=116.31), sb.settings)
        # Given an import naming one unknown box / Then nothing of it is written
        with pytest.raises(UnknownBox):
            import_bindings([BindingSpec(client_id="alice", box_id="BX-1"),
                             BindingSpec(client_id="bob", box_id="BX-9")])
        assert not bindings_of_box("BX-1")
        # When every box is known / Then every binding is written, as `bind` writes it
        assert import_bindings([BindingSpec(client_id="alice", box_id="BX-1"),
                                BindingSpec(client_id="alice", box_id="BX-2"),
                                BindingSpec(client_id="bob", box_id="BX-2", locale="en")]) == 3
        assert [b.client_id for b in bindings_of_box("BX-2")] == ["alice", "bob"]
        assert sorted(b.box_id for b in boxes_of_client("alice")) == ["BX-1", "BX-2"]
        assert all(b.enabled for b in bindings_of_box("BX-2"))


def test_cli_imports_boxes_from_csv_into_the_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_file = tmp_path / "boxes.csv"
    csv_file.write_text(
        "id,name,address,lat,lng,timezone\n"
        "BX-1,No.3 building,Zhongguancun St 3,39.98,116.31,Asia/Shanghai\n"
        "BX-2,No.5 building,Zhongguancun St 5,39.988,116.31,Asia/Shanghai\n"
        "BX-3,Broken row,,not-a-number,116.3,Asia/Shanghai\n"
    )
    with Sandbox() as sb:
        # Given a deployed stack whose outputs name the tables (a stack made of the template's tables)
        tables = {k: v for k, v in sb.template.resources.items() if v["Type"] == "AWS::DynamoDB::Table"}
        outputs = {f"{k}Name": {"Value": {"Ref": k}} for k in tables}
        body = {"Resources": {k: {"Type": v["Type"], "Properties": sb.template.resolve(v["Properties"])}
                              for k, v in tables.items()}, "Outputs": outputs}
        sb.client("cloudformation").create_stack(StackName="boxwatch-test", TemplateBody=json.dumps(body))
        names = {o["OutputKey"]: o["OutputValue"] for o in
                 sb.client("cloudformation").describe_stacks(StackName="boxwatch-test")["Stacks"][0]["Outputs"]}
        # When an operator imports the CSV
        rc = main(["boxes", "import", str(csv_file), "--stack", "boxwatch-test"])
        # Then the good rows are in the stack's boxes table and the bad row is reported
        assert rc == 1
        items = sb.client("dynamodb").scan(TableName=names["BoxesTableName"])["Items"]
        assert sorted(i["box_id"]["S"] for i in items) == ["BX-1", "BX-2"]
        err = capsys.readouterr().err
        assert "boxes.csv:4: skipped" in err and "imported 2 boxes" in err
