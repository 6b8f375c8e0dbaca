"""Evaluation reports a person can read: Markdown tables and PNG charts in one directory.

    write_report(out_dir, "Search on Home Depot", sections=[
        Section("Overall", {"bm25": {"ndcg@10": 0.31, ...}, "dense": {...}}, chart="overall.png"),
    ])

writes `out_dir/report.md` (one table per section, models as rows, metrics as columns,
the best value of each column in bold) and a grouped bar chart per section.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

Metrics = Mapping[str, Mapping[str, float]]  # row (model or slice) -> metric -> value


@dataclass
class Section:
    title: str
    rows: Metrics
    chart: str | None = None  # PNG file name inside the report directory
    note: str = ""


def markdown_table(rows: Metrics, columns: Sequence[str] | None = None, digits: int = 4) -> str:
    """Rows x columns of numbers, the best (largest) value of each column in bold."""
    names = list(rows)
    columns = list(columns or dict.fromkeys(c for r in rows.values() for c in r))
    best = {c: max((rows[n].get(c, float("-inf")) for n in names), default=None) for c in columns}
    lines = ["| | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name in names:
        cells = []
        for column in columns:
            value = rows[name].get(column)
            if value is None:
                cells.append("")
                continue
            text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
            cells.append(f"**{text}**" if value == best[column] and len(names) > 1 else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_chart(path: Path, rows: Metrics, title: str, columns: Sequence[str] | None = None) -> None:
    """Grouped bars: one group per column (metric or slice), one bar per row (model)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(rows)
    columns = list(columns or dict.fromkeys(c for r in rows.values() for c in r))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(columns) + 2), 4.0))
    positions = np.arange(len(columns))
    for i, name in enumerate(names):
        values = [rows[name].get(c, 0.0) or 0.0 for c in columns]
        ax.bar(positions + i * width - 0.4 + width / 2, values, width, label=name)
    ax.set_xticks(positions, columns)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out_dir: Path, title: str, sections: Sequence[Section], preamble: str = "") -> Path:
    """`out_dir/report.md` plus one PNG per section that names a chart; returns the .md path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", preamble] if preamble else [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        if section.note:
            parts.append(section.note)
        parts.append(markdown_table(section.rows))
        if section.chart:
            bar_chart(out_dir / section.chart, section.rows, section.title)
            parts.append(f"![{section.title}]({section.chart})")
    path = out_dir / "report.md"
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return path
