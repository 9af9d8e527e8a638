"""Cold start: import time of each handler module in a fresh interpreter, with its template
environment, against `import boto3` in a fresh interpreter on the same machine (median of N).
The two are timed in turns (boto3, handler, boto3, handler, ...), and each handler's ratio is to
the boto3 imports timed beside it: this machine's speed drifts by 20 % over a minute.

`python -X importtime` names the heaviest packages a handler pulls in at module top (each package's
own modules, wherever they are imported from) and the handler's and domain's own modules.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from boxwatch_infra.aws.environ import FAKE_CREDENTIALS
from boxwatch_infra.aws.template import Template

TIMER = "import time, importlib; t = time.perf_counter(); importlib.import_module({mod!r}); " \
        "print(time.perf_counter() - t)"


def _env(template: Template, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "PYTHONPATH"))}
    env.update(FAKE_CREDENTIALS)
    env.update({"AWS_REGION": template.region, "AWS_DEFAULT_REGION": template.region,
                "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})  # nothing may reach AWS while importing
    env.update(extra)
    return env


def _time_import(module: str, cwd: Path | None, env: dict[str, str]) -> float:
    path = [str(cwd)] if cwd else []
    code = f"import sys; sys.path[:0] = {path!r}; " + TIMER.format(mod=module)
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    return float(out.stdout.strip().splitlines()[-1])


def import_profile(module: str, cwd: Path, env: dict[str, str]) -> list[tuple[str, int, int]]:
    """(module, self µs, depth) of every module the import of `module` loads, from `python -X importtime`
    (depth 0 = `module` itself)."""
    code = f"import sys; sys.path[:0] = [{str(cwd)!r}]; import {module}"
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=cwd, env=env,
                         capture_output=True, text=True, check=True, timeout=60)
    rows: list[tuple[str, int, int]] = []
    pending: list[tuple[str, int, int]] = []  # -X importtime prints children before their parent
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|( *)(\S+)", line)
        if not m:
            continue
        depth, name = (len(m.group(2)) - 1) // 2, m.group(3)
        pending.append((name, int(m.group(1)), depth))
        if depth == 0:
            if name == module:
                rows = pending
            pending = []
    return rows


def heaviest_imports(profile: list[tuple[str, int, int]], top: int = 5) -> list[dict[str, Any]]:
    """Top-level packages by the import time of their own modules (µs summed over every module of
    the package the handler loads, wherever in the tree), heaviest first."""
    totals: dict[str, int] = {}
    for name, us, depth in profile:
        if depth:
            totals[name.split(".")[0]] = totals.get(name.split(".")[0], 0) + us
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return [{"package": name, "ms": round(us / 1000, 1)} for name, us in ranked]


def own_modules(profile: list[tuple[str, int, int]], package: str = "boxwatch", top: int = 6) -> list[dict[str, Any]]:
    """The handler module and the domain's modules by their own import time (µs), heaviest first."""
    mine = [(name, us) for name, us, depth in profile
            if depth == 0 or name == package or name.startswith(package + ".")]
    return [{"module": name, "ms": round(us / 1000, 1)} for name, us in sorted(mine, key=lambda kv: -kv[1])[:top]]


def run(repeats: int, template: Template | None = None) -> dict[str, Any]:
    t = template or Template()
    base_env = _env(t, {})
    all_boto3: list[float] = []
    functions: dict[str, Any] = {}
    for logical, spec in sorted(t.functions.items()):
        module = spec.handler.rpartition(".")[0]
        if not (spec.code_dir / f"{module.replace('.', '/')}.py").exists():
            functions[logical] = {"error": f"not measured: {spec.code_dir.name}/{module}.py does not exist yet"}
            continue
        env = _env(t, {**spec.environment, "POWERTOOLS_TRACE_DISABLED": "true",
                       "AWS_LAMBDA_FUNCTION_NAME": t.physical_name(logical),
                       "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb)})
        try:
            runs, beside = [], []
            for _ in range(repeats):
                beside.append(_time_import("boto3", None, base_env))
                runs.append(_time_import(module, spec.code_dir, env))
            profile = import_profile(module, spec.code_dir, env)
            heavy, own = heaviest_imports(profile), own_modules(profile)
        except subprocess.CalledProcessError as exc:
            functions[logical] = {"error": (exc.stderr or "").strip().splitlines()[-1:]}
            continue
        median, boto3_s = statistics.median(runs), statistics.median(beside)
        all_boto3 += beside
        functions[logical] = {"import_s": round(median, 4), "ratio_to_boto3": round(median / boto3_s, 2),
                              "boto3_beside_s": round(boto3_s, 4),
                              "heaviest_imports": heavy, "own_modules": own}
    boto3_all = statistics.median(all_boto3) if all_boto3 else _time_import("boto3", None, base_env)
    return {"repeats": repeats, "boto3_import_s": round(boto3_all, 4), "functions": functions}
