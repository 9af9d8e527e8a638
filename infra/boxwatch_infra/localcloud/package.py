"""`python -m boxwatch_infra.localcloud.package` (`make package`): the Lambda deployment artifacts
for python3.12 x86_64, and their sizes against Lambda's limits.

- the domain layer: `layers/boxwatch/requirements.txt` as manylinux2014 x86_64 / CPython 3.12 wheels
  (pip, binary only: what `sam build` would put in the layer) plus the `boxwatch` package, under
  `python/` as Lambda layers expect;
- one zip per function of the template (its CodeUri).

Limits (AWS Lambda quotas): a zip uploaded directly <= 50 MB; function + layers unzipped <= 250 MB.
Exit code 1 when an artifact is over a limit or the wheels cannot be fetched.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from boxwatch_infra.aws.template import ROOT, Template

MB = 1024 * 1024
ZIP_LIMIT = 50 * MB
UNZIPPED_LIMIT = 250 * MB
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
