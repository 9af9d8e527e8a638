"""The differential test: seeded random scenarios through `boxwatch replay` and through the model.

    python -m tests.model.differential --count 5000 --jobs 2      (make soak: resumable, --resume)
    python -m tests.model.differential --seed 1234 --shrink       (one seed, minimal YAML)
    python -m tests.model.differential --file tests/scenarios/x.yaml   (a scenario file)

Speed: one Sandbox per parameter set and process, emptied between scenarios
(harness.SandboxPool); scenarios grouped by parameter set; moto's DynamoDB answers dumped as JSON
instead of walked through botocore's shapes (the local cloud's tested fast path, same bodies);
partition-local queries and item-level transaction rollback (`scalable_dynamodb`, the local cloud's
too); botocore's data files and sessions shared by the emulated containers (`lambda_runtime`);
seeds dealt to `--jobs` worker processes. About 2.6 s of CPU per full scenario (70 s for 20 before
the sharing, 31 s after, 2 jobs).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import multiprocessing
import os
import re
import sys
import time
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.model.generate import generate
from tests.model.shrink import shrink, to_yaml

_FAST = False


def speed_up_moto() -> None:
    global _FAST
    if _FAST:
        return
    import moto.core.responses

    from boxwatch_infra.aws.moto_patches import fast_dynamodb_responses, scalable_dynamodb

    fast_dynamodb_responses()
    scalable_dynamodb()  # partition-local queries, rollback of the named items only: same answers
    # moto lists its handler class's methods with inspect.getmembers on every request
    moto.core.responses.method_names_from_class = functools.cache(  # type: ignore[attr-defined]
        moto.core.responses.method_names_from_class)  # type: ignore[attr-defined]
    _FAST = True


@dataclass
class SeedResult:
    seed: int
    classes: list[str]
    details: list[str]
    required: Counter[str] = field(default_factory=Counter)
    pushes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    faults_fired: int = 0


def classes_of(scenario: dict[str, Any], pool: Any) -> tuple[set[str], Any]:
    """The disagreement classes of one scenario (an exception is a class of its own)."""
    from tests.model.harness import run

    try:
        outcome = run(scenario, pool)
    except Exception as exc:  # a replay crash or a timeline mismatch is a finding too
        return {f"error:{type(exc).__name__}"}, exc
    return {d.cls for d in outcome.result.disagreements}, outcome


_POOL: Any = None


def _pool() -> Any:
    global _POOL
    if _POOL is None:
        from tests.model.harness import SandboxPool

        speed_up_moto()
        _POOL = SandboxPool()
    return _POOL


SIZE = os.environ.get("BOXWATCH_MODEL_SIZE", "full")  # small | full (generate.py)


def run_seed(seed: int) -> SeedResult:
    scenario = generate(seed, size=SIZE)
    started = time.perf_counter()
    classes, outcome = classes_of(scenario, _pool())
    res = SeedResult(seed, sorted(classes), [], seconds=time.perf_counter() - started)
    if isinstance(outcome, BaseException):
        res.details = ["".join(traceback.format_exception(outcome)).strip()[-2000:]]
        return res
    res.details = [str(d) for d in outcome.result.disagreements[:20]]
    res.required = outcome.result.required
    res.pushes = outcome.result.pushes
    res.faults_fired = sum(int(f.get("fired", 0)) for f in outcome.report.get("faults", []))
    return res


def _batch(seeds: list[int], size: str | None = None) -> list[SeedResult]:
    global SIZE
    SIZE = size or SIZE
    # a line per seed: a long soak cut short still says what it covered
    progress = os.environ.get("BOXWATCH_MODEL_PROGRESS")
    out = []
    for s in seeds:
        out.append(run_seed(s))
        if progress:
            with open(progress, "a") as f:
                f.write(progress_line(out[-1]) + "\n")
    return out


# what decides a seed's result: the system (product, template, the replay tooling it runs in) and
# the model. Not this runner nor the shrinker, nor tooling replay does not load (bench, local
# cloud, CLI): a soak may be resumed after a change to those (tests/model/test_tools.py checks
# that every module a replay loads is in here)
FINGERPRINTED = ("template.yaml", "pyproject.toml", "layers", "functions", "infra/boxwatch_infra/__init__.py",
                 "infra/boxwatch_infra/aws", "infra/boxwatch_infra/replay", "infra/boxwatch_infra/sandbox.py",
                 "tests/model/model.py", "tests/model/check.py", "tests/model/generate.py", "tests/model/world.py",
                 "tests/model/harness.py")
ROOT = Path(__file__).resolve().parents[2]


def code_fingerprint(root: Path | None = None) -> str:
    """A hash of every source file that decides a seed's result (path and bytes): a progress line
    counts for a resumed soak only if it was made by the same code."""
    return _this_code() if root is None else _fingerprint(root)


@functools.cache
def _this_code() -> str:
    return _fingerprint(ROOT)


def _fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for top in FINGERPRINTED:
        path = root / top
        files = [path] if path.is_file() else sorted(
            f for f in path.rglob("*") if f.is_file() and f.suffix in (".py", ".yaml", ".yml", ".txt", ".toml")
            and "__pycache__" not in f.parts and not any(p.endswith(".egg-info") for p in f.parts))
        for f in files:
            digest.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def progress_line(r: SeedResult) -> str:
    counts = {"required": dict(r.required), "pushes": dict(r.pushes), "faults": r.faults_fired,
              "seconds": round(r.seconds, 2), "code": code_fingerprint()}
    return f"seed {r.seed}: {' '.join(r.classes) or 'agrees'} {json.dumps(counts, sort_keys=True)}"


PROGRESS_LINE = re.compile(r"^seed (\d+): (.*?) (\{.*\})$")


def from_progress(path: str, seeds: list[int], code: str | None = None) -> dict[int, SeedResult]:
    """The results a progress file holds for these seeds, made by this code (a soak cut short goes
    on from there; a line of other code, or of none named, is run again)."""
    wanted, out = set(seeds), dict[int, SeedResult]()
    code = code or code_fingerprint()
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            m = PROGRESS_LINE.match(line.strip())
            if m is None or int(m.group(1)) not in wanted:
                continue
            counts = json.loads(m.group(3))
            if counts.get("code") != code:
                continue
            classes = [] if m.group(2) == "agrees" else m.group(2).split()
            out[int(m.group(1))] = SeedResult(int(m.group(1)), classes, ["(from the progress file)"],
                                              Counter(counts["required"]), Counter(counts["pushes"]),
                                              float(counts["seconds"]), int(counts["faults"]))
    return out


@functools.cache
def profile_key(seed: int, size: str) -> str:
    return repr(sorted((generate(seed, size=size).get("settings") or {}).items()))


def in_children(jobs: int) -> ProcessPoolExecutor:
    """Worker processes: the sandboxes, moto's mocks and the speed-ups stay out of the caller's
    process. Spawned, not forked: the caller (a pytest session) may have threads of its own."""
    return ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=multiprocessing.get_context("spawn"))


def run_many(seeds: list[int], jobs: int) -> list[SeedResult]:
    """Seeds grouped by parameter set (a sandbox per set and process), dealt to `jobs` processes."""
    ordered = sorted(seeds, key=lambda s: (profile_key(s, SIZE), s))
    jobs = max(1, jobs)
    chunks = [ordered[i::jobs] for i in range(jobs)]
    for chunk in chunks:
        chunk.sort(key=lambda s: (profile_key(s, SIZE), s))
    with in_children(jobs) as ex:
        results = [r for batch in ex.map(_batch, chunks, [SIZE] * len(chunks)) for r in batch]
    return sorted(results, key=lambda r: r.seed)


def minimal_yaml(seed: int, cls: str, budget: int = 300) -> str:
    """The smallest scenario found that still shows `cls` (greedy shrinking), in a child process."""
    with in_children(1) as ex:
        return ex.submit(_minimal_yaml, seed, cls, budget, SIZE).result()


def _minimal_yaml(seed: int, cls: str, budget: int, size: str) -> str:
    global SIZE
    SIZE = size
    pool = _pool()
    scenario = generate(seed, size=SIZE)

    def fails(candidate: dict[str, Any]) -> bool:
        return cls in classes_of(candidate, pool)[0]

    small = shrink(scenario, fails, budget=budget)
    _classes, outcome = classes_of(small, pool)
    lines = [f"seed {seed}: {cls}"]
    if not isinstance(outcome, BaseException):
        lines += [str(d) for d in outcome.result.disagreements if d.cls == cls][:5]
    return to_yaml(small, "\n".join(lines))


def _run_file(path: str) -> tuple[list[str], list[str]]:
    import yaml

    classes, outcome = classes_of(yaml.safe_load(Path(path).read_text()), _pool())
    if isinstance(outcome, BaseException):
        return sorted(classes), ["".join(traceback.format_exception(outcome)).strip()[-2000:]]
    return sorted(classes), [str(d) for d in outcome.result.disagreements]


def run_file(path: str | Path, ex: ProcessPoolExecutor | None = None) -> tuple[list[str], list[str]]:
    """(classes, disagreements) of one scenario file, run in a child process (`ex`'s, else a new one)."""
    if ex is not None:
        return ex.submit(_run_file, str(path)).result()
    with in_children(1) as own:
        return own.submit(_run_file, str(path)).result()


def summary(results: list[SeedResult], seconds: float) -> str:
    required: Counter[str] = Counter()
    pushes: Counter[str] = Counter()
    for r in results:
        required.update(r.required)
        pushes.update(r.pushes)
    failing: dict[str, list[int]] = {}
    for r in results:
        for c in r.classes:
            failing.setdefault(c, []).append(r.seed)
    lines = [f"{len(results)} scenarios in {seconds:.1f} s ({seconds / max(1, len(results)):.2f} s each); "
             f"{sum(1 for r in results if r.faults_fired)} with faults that fired "
             f"({sum(r.faults_fired for r in results)} injected failures)",
             "checked per kind (required pushes / pushes seen):"]
    for kind in sorted(set(required) | set(pushes)):
        lines.append(f"  {kind:22s} {required[kind]:7d} / {pushes[kind]:7d}")
    if failing:
        lines.append(f"{sum(1 for r in results if r.classes)} scenarios disagree:")
        for cls, seeds in sorted(failing.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"  {cls:40s} {len(seeds):5d}  e.g. seeds {seeds[:5]}")
    else:
        lines.append("no disagreement")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    global SIZE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=int(os.environ.get("BOXWATCH_MODEL_SCENARIOS", 300)))
    ap.add_argument("--start", type=int, default=int(os.environ.get("BOXWATCH_MODEL_SEED", 0)))
    ap.add_argument("--seed", type=int, action="append", help="run only these seeds")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("BOXWATCH_MODEL_JOBS", min(2, os.cpu_count() or 1))))
    ap.add_argument("--file", action="append", help="run these scenario files instead of seeds")
    ap.add_argument("--size", choices=("small", "full"), default=SIZE)
    ap.add_argument("--shrink", action="store_true", help="print a minimal YAML for the first seed of each class")
    ap.add_argument("--show", type=int, default=0, help="print the disagreements of the first N failing seeds")
    ap.add_argument("--progress", help="append a line per seed to this file as it finishes")
    ap.add_argument("--resume", action="store_true",
                    help="take the seeds the --progress file already holds from it; run only the others")
    args = ap.parse_args(argv)
    if args.progress:
        os.environ["BOXWATCH_MODEL_PROGRESS"] = args.progress
    SIZE = args.size
    if args.file:
        failed = 0
        with in_children(1) as ex:
            for path in args.file:
                classes, details = run_file(path, ex)
                failed += bool(classes)
                print(f"{path}: {classes or 'agrees'}")
                for d in details:
                    print("   ", d)
        return 1 if failed else 0
    seeds = args.seed or list(range(args.start, args.start + args.count))
    taken = from_progress(args.progress, seeds) if args.resume and args.progress else {}
    if args.progress:
        print(f"code {code_fingerprint()}: {len(taken)} of {len(seeds)} seeds taken from {args.progress}", flush=True)
    started = time.perf_counter()
    results = sorted([*taken.values(), *run_many([s for s in seeds if s not in taken], args.jobs)],
                     key=lambda r: r.seed)
    print(summary(results, time.perf_counter() - started))
    bad = [r for r in results if r.classes]
    for r in bad[:args.show]:
        print(f"--- seed {r.seed}: {r.classes}")
        for d in r.details:
            print("   ", d)
    if args.shrink and bad:
        done: set[str] = set()
        for r in bad:
            for cls in r.classes:
                if cls not in done:
                    done.add(cls)
                    print(f"--- minimal scenario for {cls} (seed {r.seed}):")
                    print(minimal_yaml(r.seed, cls))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
