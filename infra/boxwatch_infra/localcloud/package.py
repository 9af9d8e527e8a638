"""`python -m boxwatch_infra.localcloud.package` (`make package`): the Lambda deployment artifacts
for python3.12 x86_64, and their sizes against Lambda's limits.

- the domain layer: `layers/boxwatch/requirements.txt` as manylinux2014 x86_64 / CPython 3.12 wheels
  (pip, binary only: what `sam build` would put in the layer) without what the runtime ships
  (boto3 and its dependencies), plus the `boxwatch` package, under `python/` as Lambda layers expect;
- one zip per function of the template (its CodeUri).

Limits (AWS Lambda quotas): a zip uploaded directly <= 50 MB; function + layers unzipped <= 250 MB.
Exit code 1 when an artifact is over a limit or the wheels cannot be fetched.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from boxwatch_infra.aws.template import ROOT, Template

MB = 1024 * 1024
ZIP_LIMIT = 50 * MB
UNZIPPED_LIMIT = 250 * MB
# in the Lambda python3.12 runtime already (AWS: "Lambda runtimes include the AWS SDK for Python")
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six")
SKIP = ("__pycache__", ".pyc", ".dist-info/RECORD")


def human(n: int) -> str:
    return f"{n / MB:.2f} MB" if n >= MB else f"{n / 1024:.1f} kB"


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def zip_tree(src: Path, dest: Path) -> int:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(src.rglob("*")):
            if f.is_file() and not any(s in str(f) for s in ("__pycache__", ".pyc")):
                zf.write(f, f.relative_to(src).as_posix())
    return dest.stat().st_size


def drop_runtime_provided(site: Path) -> list[str]:
    """Remove what the python3.12 runtime ships (boto3 and its dependencies) from an installed
    layer: pynamodb and powertools pull botocore in (~30 MB), and a layer's copy would shadow the
    runtime's, which the runtime's boto3 is tested with. Returns the distributions removed."""
    dropped = []
    for dist in sorted(site.glob("*.dist-info")):
        name = dist.name.split("-")[0].lower().replace("_", "-")
        if name not in RUNTIME_PROVIDED:
            continue
        record = dist / "RECORD"
        for line in record.read_text().splitlines() if record.exists() else ():
            path = site / line.split(",")[0]
            if path.is_file() and site in path.resolve().parents:
                path.unlink()
        shutil.rmtree(dist, ignore_errors=True)
        dropped.append(name)
    for folder in sorted(site.iterdir(), reverse=True):  # packages left empty (their __pycache__)
        if folder.is_dir() and not any(f.is_file() for f in folder.rglob("*")):
            shutil.rmtree(folder)
    return dropped


def console(out: Path) -> tuple[int, int]:
    """The operator console as published to its bucket: the static files (no build step) and a
    config.json whose values `docs/operator-api.md` says how to fill from the stack's outputs."""
    src = ROOT / "console"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("config.json", ".*"))
    (out / "config.json").write_text(json.dumps({
        "api_url": "${CommandApiUrl}", "user_pool_id": "${ClientUserPoolId}", "client_id": "${ClientAppClientId}",
        "region": "${AWS::Region}", "tile_url": None, "local_sign_in": False}, indent=2) + "\n")
    return zip_tree(out, out.parent / "console.zip"), dir_size(out)


def build(out: Path, python_version: str = "3.12", platform: str = "manylinux2014_x86_64") -> int:
    template = Template()
    if out.exists():
        shutil.rmtree(out)
    rows: list[tuple[str, int, int]] = []
    ok = True
    for logical, res in template.resources_of_type("AWS::Serverless::LayerVersion").items():
        content = (template.path.parent / res["Properties"]["ContentUri"]).resolve()
        site = out / "layers" / logical / "python"
        site.mkdir(parents=True)
        req = content / "requirements.txt"
        if req.exists():
            cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "--platform", platform, "--implementation", "cp", "--python-version", python_version,
                   "--only-binary=:all:", "--target", str(site), "-r", str(req)]
            print("$ " + " ".join(cmd[2:]), flush=True)
            if subprocess.run(cmd).returncode != 0:
                print("cannot fetch the layer's wheels (no network to PyPI?)", file=sys.stderr)
                return 1
        dropped = drop_runtime_provided(site)
        if dropped:
            print(f"  provided by the Lambda runtime, not shipped: {', '.join(dropped)}", flush=True)
        for pkg in content.iterdir():
            if pkg.is_dir() and (pkg / "__init__.py").exists():
                shutil.copytree(pkg, site / pkg.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        unzipped = dir_size(site.parent)
        zipped = zip_tree(site.parent, out / f"{logical}.zip")
        rows.append((f"layer {logical}", zipped, unzipped))
    layer_unzipped = sum(r[2] for r in rows)
    for logical, spec in template.functions.items():
        zipped = zip_tree(spec.code_dir, out / "functions" / f"{logical}.zip")
        rows.append((f"function {logical}", zipped, dir_size(spec.code_dir)))

    rows.append(("console (static site)", *console(out / "console")))

    print(f"\n{'artifact':<40} {'zip':>10} {'unzipped':>10} {'fn+layers unzipped':>20}  limits 50 MB zip / 250 MB")
    for name, zipped, unzipped in rows:
        total = unzipped + (layer_unzipped if name.startswith("function") else 0)
        over = zipped > ZIP_LIMIT or total > UNZIPPED_LIMIT
        ok &= not over
        print(f"{name:<40} {human(zipped):>10} {human(unzipped):>10} {human(total):>20}  "
              f"{'OVER LIMIT' if over else 'ok'}")
    print(f"\nartifacts in {out}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="build Lambda artifacts and check their sizes")
    ap.add_argument("--out", default=str(ROOT / "build" / "package"))
    args = ap.parse_args(argv)
    return build(Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
