"""Every minimal scenario the differential test found (tests/model/findings/*.yaml) must agree
with the model: each file names the claim it breaks and the disagreement it showed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.model import differential

FINDINGS = sorted((Path(__file__).parent / "findings").glob("*.yaml"))


@pytest.mark.parametrize("path", FINDINGS, ids=[p.stem for p in FINDINGS])
def test_finding_agrees_with_the_model(path: Path) -> None:
    # Given a scenario that once made replay and the model disagree
    # When it runs through replay and the model
    classes, details = differential.run_file(path)
    # Then they agree: every required push, nothing forbidden, nothing twice
    assert not classes, "\n".join(details)
