"""Turn the measurements into bench/results.json, results.md (the README's table) and results.png."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Row:
    section: str
    measurement: str
    ours: str
    baseline: str = "—"
    ratio: str = "—"
    target: str = "—"
    met: bool | None = None  # None: informative, or not measured
    note: str = ""

    def cells(self) -> list[str]:
        met = {True: "yes", False: "**no**", None: "—"}[self.met]
        note = f" ({self.note})" if self.note else ""
        return [self.measurement, self.ours, self.baseline, self.ratio, self.target, met + note]


def fmt(x: float, digits: int = 1) -> str:
    """1,234 / 12.5 / 3 (no trailing zeros)."""
    if abs(x) >= 100:
        return f"{x:,.0f}"
    text = f"{x:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def ratio(baseline: float, ours: float) -> str:
    if not ours:
        return "—"
    return f"{baseline / ours:,.1f}×"


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    head = ["measurement", "ours", "baseline", "ratio", "target", "met?"]
    lines = [
        f"Measured {meta['date']} on {meta['machine']} (`{meta['command']}`, {meta['wall_s']:.0f} s). "
        "Counts (requests, items, capacity units) are exact for the handlers as shipped; times are "
        "in-process on the same machine as their baseline. Ratio = baseline / ours.",
        "",
    ]
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            lines += ["", f"**{section}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row.cells()) + " |")
    notes = meta.get("notes", [])
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines).lstrip("\n") + "\n"


def write_json(path: Path, rows: list[Row], meta: dict[str, Any], raw: dict[str, Any]) -> None:
    doc = {"meta": meta, "rows": [asdict(r) for r in rows], "raw": raw}
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False, default=str) + "\n")


def chart(path: Path, raw: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    per = raw.get("per_alarm", {}).get("fleets", [])
    fleets = [f["fleet"] for f in per]
    for ax, key, title in ((axes[0][0], "dynamodb_requests", "DynamoDB requests per alarm"),
                           (axes[0][1], "rcu", "Read capacity units per alarm")):
        if per:
            ax.plot(fleets, [f["ours"][key] for f in per], "o-", label="ours (H3 cell index)")
            ax.plot(fleets, [f["baseline"][key] for f in per], "s--", label="baseline (Scan)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.legend()
        ax.set_title(title)
        ax.set_xlabel("fleet (boxes)")
    ax = axes[1][0]
    sweep = raw.get("sweep", {})
    if sweep.get("cases"):
        for label in sorted({c["offline_label"] for c in sweep["cases"]}):
            cases = [c for c in sweep["cases"] if c["offline_label"] == label]
            ax.plot([c["fleet"] for c in cases], [c["items_read"] for c in cases], "o-", label=f"{label} offline")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "sweep: " + str(sweep.get("not_measured", "not measured")), ha="center", va="center",
                wrap=True, transform=ax.transAxes)
    ax.set_title("Offline sweep: items read per sweep")
    ax.set_xlabel("fleet (boxes)")
    ax = axes[1][1]
    cold = raw.get("cold_start", {})
    names = [n for n, f in cold.get("functions", {}).items() if "import_s" in f]
    if names:
        values = [cold["boto3_import_s"] * 1000] + [cold["functions"][n]["import_s"] * 1000 for n in names]
        ax.barh(["import boto3"] + [n.removesuffix("Function") for n in names], values)
        ax.set_xlabel("ms (median, fresh interpreter)")
    ax.set_title("Cold start: module import time")
    fig.suptitle("boxwatch benchmarks")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


README_BEGIN = "<!-- bench:begin (written by `make bench`) -->"
README_END = "<!-- bench:end -->"


def update_readme(readme: Path, table: str) -> bool:
    """Replace the table between the README's bench markers; False when the markers are missing."""
    if not readme.exists():
        return False
    text = readme.read_text()
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        return False
    readme.write_text(text[: start + len(README_BEGIN)] + "\n" + table + text[end:])
    return True
