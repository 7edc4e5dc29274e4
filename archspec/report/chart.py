"""Charts drawn from analysis results: the lecture's closing chart (top-1 against operations, circle area
for memory), any two model figures against each other, and a per-layer profile of one model.

Two steps, so tests can check each: pure functions turn analyses into the numbers to plot (`ChartData`,
`ProfileData`), and the `*_figure` functions hand exactly those numbers to matplotlib. matplotlib is
imported only here and only when a chart is drawn, so `archspec analyze` starts as fast as before.
Output is deterministic (fixed hash salt, no date, no version stamp, text kept as text), so committed
SVG files only change when the figures do.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from archspec.analysis.analyze import Analysis
from archspec.report.table import human, human_bytes, top1

# Figures a chart can plot, and how their axis is labelled. Memory figures are bytes (per batch).
FIGURES = {
    "macs": "MACs per image (conv + linear multiply-accumulates)",
    "params": "parameters",
    "peak": "peak live activation memory (bytes)",
    "activations": "activation memory, sum of outputs (bytes)",
    "top1": "published top-1 accuracy (%)",
}


def figure_value(analysis: Analysis, figure: str):
    t = analysis.totals
    return {
        "macs": lambda: t.macs,
        "params": lambda: t.params,
        "peak": lambda: t.peak_activation_bytes,
        "activations": lambda: t.activation_bytes,
        "top1": lambda: top1(analysis),
    }[figure]()


def _short(figure: str, value) -> str:
    if figure in ("peak", "activations"):
        return human_bytes(value)
    return f"{value}%" if figure == "top1" else human(value)


@dataclass(frozen=True)
class Point:
    name: str
    x: float
    y: float
    size: float | None  # the figure that sets the circle area, or None for equal circles


@dataclass(frozen=True)
class ChartData:
    x: str
    y: str
    size: str | None
    points: tuple[Point, ...]
    missing: tuple[str, ...]  # models without a value for an axis (e.g. no published top-1), listed beside


def chart_data(analyses: list[Analysis], x: str = "macs", y: str = "top1", size: str | None = "peak") -> ChartData:
    points, missing = [], []
    for a in sorted(analyses, key=lambda a: (a.totals.macs, a.name)):
        xv, yv = figure_value(a, x), figure_value(a, y)
        if xv is None or yv is None:
            missing.append(a.name)
            continue
        points.append(Point(a.name, xv, yv, None if size is None else figure_value(a, size)))
    return ChartData(x, y, size, tuple(points), tuple(missing))


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    matplotlib.rcParams.update(
        {
            "svg.hashsalt": "archspec",  # stable ids in the SVG
            "svg.fonttype": "none",  # text stays text: smaller files, no font-version churn
            "font.family": "DejaVu Sans",  # shipped with matplotlib, so the same everywhere
            "font.size": 9,
        }
    )
    return plt


LOG_FIGURES = {"macs", "params", "peak", "activations"}
MAX_AREA = 1500.0  # points^2 of the largest circle


def chart_figure(data: ChartData):
    """A matplotlib figure of `data`: one circle per model (gid `point-<name>`), each labelled."""
    plt = _matplotlib()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    biggest = max((p.size for p in data.points if p.size), default=1)
    for p in data.points:
        area = 120.0 if p.size is None else max(MAX_AREA * p.size / biggest, 12.0)  # area proportional
        ax.scatter([p.x], [p.y], s=[area], alpha=0.45, edgecolors="black", linewidths=0.6, gid=f"point-{p.name}")
    for axis, figure in (("x", data.x), ("y", data.y)):
        if figure in LOG_FIGURES:
            getattr(ax, f"set_{axis}scale")("log")
        getattr(ax, f"set_{axis}label")(FIGURES[figure] + (" (log)" if figure in LOG_FIGURES else ""))
    ax.margins(0.12)
    if data.missing:
        fig.subplots_adjust(right=0.72)
        label = "no published top-1" if data.y == "top1" else f"no {data.y}"
        fig.text(0.75, 0.88, f"{label}:\n" + "\n".join(data.missing), va="top", fontsize=7)
    ax.autoscale_view()
    _label_points(fig, ax, data.points)
    ax.grid(True, which="major", linewidth=0.3)
    title = f"{'top-1' if data.y == 'top1' else data.y} against {data.x}"
    if data.size:
        title += f"; circle area = {data.size}"
    ax.set_title(title)
    return fig


# Label positions tried in turn (offset in points, horizontal alignment): the first that does not
# overlap a label already placed wins, so crowded clusters (ResNet-152 next to Wide ResNet-50) stay legible.
_LABEL_SPOTS = (
    (5, 3, "left"),
    (5, -9, "left"),
    (-5, 3, "right"),
    (-5, -9, "right"),
    (5, 12, "left"),
    (5, -18, "left"),
    (-5, 12, "right"),
    (-5, -18, "right"),
)
_FONT = 7


def _free(box, placed) -> bool:
    return not any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in placed)


def _label_points(fig, ax, points) -> None:
    to_points = 72 / fig.dpi
    right_edge = ax.get_window_extent().x1 * to_points  # labels stay inside the axes (the list is beside)
    placed: list[tuple[float, float, float, float]] = []
    for p in points:
        px, py = (v * to_points for v in ax.transData.transform((p.x, p.y)))
        width, height = 0.6 * _FONT * len(p.name), _FONT * 1.1  # DejaVu Sans: about 0.6 em per character

        boxes = {}
        for dx, dy, align in _LABEL_SPOTS:
            left = px + dx if align == "left" else px + dx - width
            boxes[(dx, dy, align)] = (left, py + dy, left + width, py + dy + height)
        inside = [spot for spot, b in boxes.items() if b[2] <= right_edge] or list(boxes)
        dx, dy, align = next((spot for spot in inside if _free(boxes[spot], placed)), inside[0])
        box = boxes[(dx, dy, align)]
        placed.append(box)
        ax.annotate(p.name, (p.x, p.y), xytext=(dx, dy), textcoords="offset points", fontsize=_FONT, ha=align)


@dataclass(frozen=True)
class ProfileData:
    names: tuple[str, ...]  # layers, or blocks when the model is rolled up
    activation_bytes: tuple[int, ...]  # output bytes per batch
    params: tuple[int, ...]
    macs: tuple[int, ...]
    depth: int | None


def profile_data(analysis: Analysis, max_rows: int = 90) -> ProfileData:
    """Per layer (inference path): activation memory, params and MACs. Models with more than `max_rows`
    layers are summed per block of `depth` name parts, the smallest depth that fits."""
    layers = [layer for layer in analysis.layers if not layer.train_only]

    def grouped(d):
        out: list[tuple[str, list]] = []
        for layer in layers:
            key = ".".join(layer.name.split(".")[:d])
            if out and out[-1][0] == key:
                out[-1][1].append(layer)
            else:
                out.append((key, [layer]))
        return out

    depth, groups = None, grouped(None)
    if len(groups) > max_rows:  # the finest roll-up that fits (at least depth 1)
        depth = 1
        for d in range(2, 8):
            if len(grouped(d)) > max_rows:
                break
            depth = d
        groups = grouped(depth)
    per_value = analysis.totals.activation_bytes // max(analysis.totals.activations, 1) if layers else 0
    return ProfileData(
        names=tuple(k for k, _ in groups),
        activation_bytes=tuple(sum(m.activations for m in ms) * per_value for _, ms in groups),
        params=tuple(sum(m.params for m in ms) for _, ms in groups),
        macs=tuple(sum(m.macs for m in ms) for _, ms in groups),
        depth=depth,
    )


def profile_figure(data: ProfileData, title: str):
    """Three log-scale bar panels sharing the layer axis: activation memory, params, MACs."""
    plt = _matplotlib()
    n = len(data.names)
    # Fixed margins instead of tight_layout (which costs seconds per chart): room for rotated names.
    label_inches = 0.055 * max((len(name) for name in data.names), default=1) + 0.3
    height = 6.0 + label_inches
    width = max(6.0, 0.16 * n + 1.6)
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(width, height))
    fig.subplots_adjust(left=1.0 / width, right=1 - 0.2 / width, top=1 - 0.4 / height, bottom=label_inches / height)
    series = (
        ("activation memory (bytes)", data.activation_bytes),
        ("params", data.params),
        ("MACs", data.macs),
    )
    for ax, (label, values) in zip(axes, series, strict=True):
        ax.bar(range(n), values, width=0.8, gid=f"bars-{label.split()[0]}")
        if any(values):
            ax.set_yscale("log")
        ax.set_ylabel(label + " (log)", fontsize=8)
        ax.grid(True, axis="y", linewidth=0.3)
    axes[-1].set_xticks(range(n))
    axes[-1].set_xticklabels(data.names, rotation=90, fontsize=6)
    axes[-1].set_xlim(-0.6, n - 0.4)
    axes[0].set_title(title + (f" (summed per block, depth {data.depth})" if data.depth else ""))
    return fig


def figure_bytes(fig, fmt: str) -> bytes:
    """SVG or PNG bytes, without date or version stamps."""
    plt = _matplotlib()
    buffer = io.BytesIO()
    if fmt == "svg":
        metadata = {"Date": None, "Creator": None}
    else:
        metadata = {"Software": None}
    fig.savefig(buffer, format=fmt, metadata=metadata, dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def describe_points(data: ChartData) -> list[str]:
    """One line per plotted model (what the command prints beside writing the file)."""
    lines = []
    for p in data.points:
        line = f"{p.name}: {data.x} {_short(data.x, p.x)}, {data.y} {_short(data.y, p.y)}"
        if data.size:
            line += f", {data.size} {_short(data.size, p.size)}"
        lines.append(line)
    if data.missing:
        lines.append(f"not plotted (no {data.y if data.y == 'top1' else 'value'}): {', '.join(data.missing)}")
    return lines
