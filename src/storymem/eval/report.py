"""Benchmark reports: the paper-shaped table (md/csv/json), a bar chart per metric, and per-story
shot-by-shot similarity heatmaps (where consistency breaks, a person sees it at a glance)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .metrics import KEYS

LABELS = {
    "aesthetic": "aesthetic",
    "prompt_global": "prompt (global)",
    "prompt_shot": "prompt (single-shot)",
    "consistency_overall": "consistency overall",
    "consistency_top10": "consistency top-10",
}


def metric_keys(results: dict) -> list[str]:
    """The paper's five, then any extra numeric metric every run has (e.g. toy identity)."""
    runs = [r for by_method in results.values() for r in by_method.values()]
    extra = sorted(
        k
        for k in runs[0]
        if k not in KEYS and all(isinstance(r.get(k), int | float) and not isinstance(r.get(k), bool) for r in runs)
    )
    return [*KEYS, *extra]


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else None


def summarise(results: dict, methods: list[str]) -> dict:
    """{method: {metric: mean over stories}} from {story: {method: metrics}}."""
    keys = metric_keys(results)
    return {m: {k: _mean([results[s][m].get(k) for s in results]) for k in keys} for m in methods}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def write_reports(results: dict, methods: list[str], out: Path, notes: dict) -> dict[str, Path]:
    """results: {story: {method: metrics}}. Returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    keys = metric_keys(results)
    summary = summarise(results, methods)
    files = {}

    lines = [
        f"# storymem bench: {len(results)} stories, {', '.join(methods)}",
        "",
        "| method | " + " | ".join(LABELS.get(k, k) for k in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    lines += [f"| {m} | " + " | ".join(_fmt(summary[m][k]) for k in keys) + " |" for m in methods]
    lines += ["", "Means over stories. " + "; ".join(f"{k}: {v}" for k, v in notes.items()), ""]
    files["md"] = out / "results.md"
    files["md"].write_text("\n".join(lines))

    files["csv"] = out / "results.csv"
    with files["csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["story", "method", *keys])
        for story, by_method in results.items():
            for m in methods:
                writer.writerow([story, m, *(by_method[m].get(k) for k in keys)])
        for m in methods:
            writer.writerow(["mean", m, *(summary[m][k] for k in keys)])

    files["json"] = out / "results.json"
    per_story = {s: {m: {k: results[s][m].get(k) for k in keys} for m in methods} for s in results}
    files["json"].write_text(json.dumps({"mean": summary, "stories": per_story, "notes": notes}, indent=2))

    files["png"] = out / "metrics.png"
    plot_metrics(results, summary, methods, keys, files["png"])
    for story in results:
        path = out / "heatmaps" / f"{story}.png"
        plot_heatmaps(story, {m: results[story][m] for m in methods}, path)
        files[f"heatmap:{story}"] = path
    return files


def plot_metrics(results: dict, summary: dict, methods: list[str], keys: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.4), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for ax, key in zip(axes[0], keys, strict=True):
        means = [summary[m][key] if summary[m][key] is not None else 0.0 for m in methods]
        spread = [
            np.std([results[s][m][key] for s in results if results[s][m].get(key) is not None] or [0]) for m in methods
        ]
        ax.bar(range(len(methods)), means, yerr=spread, color=colours[: len(methods)], capsize=3)
        ax.set_xticks(range(len(methods)), methods, rotation=20)
        ax.set_title(LABELS.get(key, key), fontsize=10)
        for i, v in enumerate(means):
            ax.annotate(f"{v:.3f}", (i, v), ha="center", va="bottom", fontsize=8)
    fig.suptitle(f"mean over {len(results)} stories (bars: std over stories)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def pair_matrix(metrics: dict) -> tuple[list[str], np.ndarray]:
    names = [s["shot"] for s in metrics["shots"]]
    index = {n: i for i, n in enumerate(names)}
    matrix = np.eye(len(names))
    for pair in metrics["pairs"]:
        i, j = index[pair["a"]], index[pair["b"]]
        matrix[i, j] = matrix[j, i] = pair["similarity"]
    return names, matrix


def plot_heatmaps(story: str, by_method: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    matrices = {m: pair_matrix(metrics) for m, metrics in by_method.items()}
    off_diagonal = [mat[~np.eye(len(mat), dtype=bool)] for _, mat in matrices.values()]
    low = min((float(v.min()) for v in off_diagonal if v.size), default=0.0)
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 4.0), squeeze=False)
    for ax, (method, (names, mat)) in zip(axes[0], matrices.items(), strict=True):
        image = ax.imshow(mat, vmin=low, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        overall = by_method[method]["consistency_overall"]
        ax.set_title(f"{method}  (overall {overall:.3f})", fontsize=10)
        if len(names) <= 12:
            for i in range(len(names)):
                for j in range(len(names)):
                    if i != j:
                        ax.text(j, i, f"{mat[i, j]:.3f}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="cosine similarity of shot features")
    fig.suptitle(f"{story}: shot-by-shot similarity", fontsize=11)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
