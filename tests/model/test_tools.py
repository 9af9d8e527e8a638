"""The generator and the shrinker keep their promises (no AWS)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from tests.model.generate import MARGIN_M, generate
from tests.model.model import Model
from tests.model.shrink import shrink, to_yaml
from tests.model.world import distance_m


def test_generator_is_deterministic_unambiguous_and_physical() -> None:
    for seed in range(60):
        # Given a seed's scenario
        s = generate(seed, size="full")
        # Then the same seed gives the same scenario, the model finds nothing ambiguous in it,
        assert generate(seed, size="full") == s
        assert not Model(s).ambiguities
        # no two boxes lie within MARGIN_M of a radius (floats never decide),
        radii = (s["settings"]["neighbour_radius_m"], s["settings"]["outage_radius_m"])
        for a, b in itertools.combinations(s["boxes"], 2):
            d = distance_m((a["lat"], a["lng"]), (b["lat"], b["lng"]))
            assert all(abs(d - r) > MARGIN_M - 0.01 for r in radii)
        # times are whole seconds, a lifecycle event never arrives before it happened, and an
        # alarm time is never more than the contract's 5 minutes ahead of its arrival
        for e in s["events"]:
            assert float(e["t"]).is_integer()
            if e["type"] in ("connected", "disconnected"):
                assert e["at"] <= e["t"]
            if e["type"] == "alarm":
                assert e.get("alarm_at", e["t"]) <= e["t"] + 300


def test_generator_covers_every_family_and_the_edges() -> None:
    # Given 200 scenarios
    scenarios = [generate(seed, size="full") for seed in range(200)]
    types = {e["type"] for s in scenarios for e in s["events"]}
    # Then every event type, faults of every error, redeliveries and reused seqs appear
    assert types == {"ack", "alarm", "clear", "connected", "disconnected", "power_off", "power_state", "scheduled"}
    assert {f["error"] for s in scenarios for f in s.get("faults", [])} == {"throttle", "5xx", "crash"}
    assert not any(f["error"] == "crash" and f["service"] == "sns" for s in scenarios for f in s.get("faults", []))
    redelivered = reused = 0
    for s in scenarios:
        alarms = [e for e in s["events"] if e["type"] == "alarm"]
        ids = [(e["box"], e["seq"]) for e in alarms]
        contents = {(e["box"], e["seq"], e.get("alarm_at", e["t"]), e["value"]) for e in alarms}
        redelivered += len(ids) - len(contents)
        reused += len(contents) - len(set(ids))
    assert redelivered > 0 and reused > 0
    # and boxes drop exactly the gap apart in some of them
    gap_hits = 0
    for s in scenarios:
        drops = sorted(e["at"] for e in s["events"] if e["type"] == "disconnected")
        gap_hits += any(b - a == s["settings"]["outage_max_gap_s"] for a, b in itertools.pairwise(drops))
    assert gap_hits > 0


def test_shrink_keeps_what_the_failure_needs() -> None:
    # Given a scenario and a "failure" that needs B's alarm and B bound to a client
    s = generate(7, size="full")
    s["boxes"].append({"id": "BZ", "name": "Z", "lat": 39.0, "lng": 116.0})
    s["clients"].append({"id": "cz", "boxes": ["BZ"]})
    s["events"].append({"t": 5, "box": "BZ", "type": "alarm", "cause": "overtemp", "value": 90, "threshold": 85,
                        "seq": 1})

    def fails(c: dict[str, Any]) -> bool:
        return any(e.get("box") == "BZ" and e["type"] == "alarm" for e in c["events"]) and any(
            "BZ" in cl["boxes"] for cl in c.get("clients", []))

    small = shrink(s, fails)
    # Then only that remains, and the YAML reads back as the same scenario
    assert [e["box"] for e in small["events"]] == ["BZ"] and [b["id"] for b in small["boxes"]] == ["BZ"]
    assert [c["id"] for c in small["clients"]] == ["cz"] and "faults" not in small
    assert yaml.safe_load(to_yaml(small, "a comment")) == small


def test_a_soak_cut_short_goes_on_from_its_progress_file(tmp_path: Path) -> None:
    from collections import Counter

    from tests.model.differential import SeedResult, from_progress, progress_line

    # Given a progress file with two finished seeds (one disagreeing) and a line of an older format
    done = [SeedResult(7, [], [], Counter(alarm=3), Counter(alarm=3, reminder=1), 1.5, 2),
            SeedResult(8, ["alarm:missing", "reminder:twice"], [], Counter(alarm=1), Counter(), 0.5, 0)]
    log = tmp_path / "soak-progress.log"
    log.write_text("seed 6: agrees\n" + "".join(progress_line(r) + "\n" for r in done))
    # When the soak resumes over seeds 6..9
    found = from_progress(str(log), [6, 7, 8, 9])
    # Then seeds 7 and 8 come from the file with their counts and classes; 6 and 9 are run again
    assert sorted(found) == [7, 8]
    assert (found[7].required, found[7].pushes, found[7].faults_fired) == (Counter(alarm=3),
                                                                         Counter(alarm=3, reminder=1), 2)
    assert found[8].classes == ["alarm:missing", "reminder:twice"]


def test_a_resumed_soak_takes_only_lines_of_the_same_code(tmp_path: Path) -> None:
    import json
    from collections import Counter

    from tests.model.differential import SeedResult, code_fingerprint, from_progress, progress_line

    # Given a progress line made by this code, one made by other code and one naming no code
    line = progress_line(SeedResult(7, [], [], Counter(alarm=1), Counter(alarm=1), 1.0, 0))
    counts = json.loads(line.split(" ", 3)[3])
    other = line.replace("seed 7:", "seed 8:").replace(counts["code"], "0" * 16)
    unnamed = "seed 9: agrees " + json.dumps({k: v for k, v in counts.items() if k != "code"})
    log = tmp_path / "soak-progress.log"
    log.write_text("\n".join([line, other, unnamed]) + "\n")
    # When the soak resumes over seeds 7..9
    found = from_progress(str(log), [7, 8, 9])
    # Then only seed 7 is taken: the others ran on code that may not be this one
    assert sorted(found) == [7] and counts["code"] == code_fingerprint()


def test_the_fingerprint_follows_the_system_not_the_runner(tmp_path: Path) -> None:
    from tests.model.differential import FINGERPRINTED, code_fingerprint

    # Given a copy of the fingerprinted files
    root = Path(__file__).resolve().parents[2]
    for top in [*FINGERPRINTED, "tests/model/differential.py"]:
        src = root / top
        for f in [src] if src.is_file() else [p for p in src.rglob("*.py") if "__pycache__" not in p.parts]:
            dst = tmp_path / f.relative_to(root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(f.read_bytes())
    before = code_fingerprint(tmp_path)
    # When the runner changes, the fingerprint stays; when the product changes, it moves
    (tmp_path / "tests/model/differential.py").write_text("# another runner\n")
    assert code_fingerprint(tmp_path) == before
    (tmp_path / "layers/boxwatch/boxwatch/outage.py").write_text("# another sweep\n")
    assert code_fingerprint(tmp_path) != before


def test_every_module_a_replay_loads_is_fingerprinted() -> None:
    import json
    import subprocess
    import sys

    from tests.model.differential import FINGERPRINTED

    # Given a scenario run through replay and the model in a fresh interpreter (a test run
    # shares one process: other tests' imports must not count)
    root = Path(__file__).resolve().parents[2]
    probe = (
        "import json, sys\n"
        "from tests.model.differential import run_seed\n"
        "run_seed(3)\n"
        "print(json.dumps([getattr(m, '__file__', None) for n, m in list(sys.modules.items())\n"
        "                  if n.split('.')[0] in ('boxwatch', 'boxwatch_infra', 'app')]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True)
    files = json.loads(out.stdout.strip().splitlines()[-1])
    # Then every module of the system and its tooling that ran is in a fingerprinted path
    ran = {Path(f).resolve() for f in files if f}
    assert any(f.is_relative_to(root / "layers") for f in ran)
    ran |= {root / "tests/model" / f"{n}.py" for n in ("model", "check", "generate", "world", "harness")}
    outside = sorted(str(f.relative_to(root)) for f in ran if f.is_relative_to(root)
                     and not any(f == root / top or f.is_relative_to(root / top) for top in FINGERPRINTED))
    assert outside == []
