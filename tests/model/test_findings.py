"""Every minimal scenario the differential test found (tests/model/findings/*.yaml) must agree
with the model: each file names the claim it breaks and the disagreement it showed."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from tests.model import differential

FINDINGS = sorted((Path(__file__).parent / "findings").glob("*.yaml"))


@pytest.fixture(scope="module")
def worker() -> Iterator[ProcessPoolExecutor]:
    """One worker process (and sandbox) for all the files."""
    with differential.in_children(1) as ex:
        yield ex


OPEN: set[str] = set()  # findings the system still differs on (a strict xfail each, so a fix shows)


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="open finding"))
                                  if p.stem in OPEN else p for p in FINDINGS], ids=[p.stem for p in FINDINGS])
def test_finding_agrees_with_the_model(path: Path, worker: ProcessPoolExecutor) -> None:
    # Given a scenario that once made replay and the model disagree
    # When it runs through replay and the model
    classes, details = differential.run_file(path, worker)
    # Then they agree: every required push, nothing forbidden, nothing twice
    assert not classes, "\n".join(details)
