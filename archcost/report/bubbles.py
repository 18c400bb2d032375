"""Bubble charts done carefully: one absolute area scale for parameters (the same model
has the same bubble in every figure), a size legend stating it, axis limits that keep
every bubble inside the axes, and labels placed where they overlap neither each other
nor the bubbles (a greedy search over offsets around each point, matplotlib's own text
extents; a leader line when a label has to move away)."""

from __future__ import annotations

import math

# Bubble area in points^2 per parameter: 1 pt^2 per 100K parameters (VGG19's 144M is a
# disc of 1,437 pt^2, 43 pt wide). Models under MIN_AREA pt^2 are drawn at MIN_AREA.
PARAMS_PER_PT2 = 100_000
MIN_AREA = 8.0


def disc_area(params) -> float:
    """The bubble's area in points^2."""
    return max(float(params) / PARAMS_PER_PT2, MIN_AREA)


def area(params) -> float:
    """matplotlib's scatter size ``s`` for a disc of ``disc_area``: ``s`` is the square
    of the marker's diameter in points, so the disc's area is pi/4 of it."""
    return disc_area(params) * 4 / math.pi


def radius_pt(params) -> float:
    return math.sqrt(disc_area(params) / math.pi)


def size_legend(ax, loc="lower right", values=(1e6, 10e6, 100e6), floored=False, **kwargs):
    """A legend of reference bubbles (1M, 10M, 100M parameters) on the absolute scale;
    ``floored``: some bubble was drawn at the minimum size, and the title says so."""
    exact = [v / PARAMS_PER_PT2 * 4 / math.pi for v in values]  # the scale itself, no floor
    handles = [ax.scatter([], [], s=s, facecolor="none", edgecolor="0.3", linewidths=0.8) for s in exact]
    labels = [f"{v / 1e6:g}M params" for v in values]
    leg = ax.legend(handles, labels, loc=loc, title=f"bubble area = params\n(1 pt\u00b2 per {PARAMS_PER_PT2 // 1000}K"
                    + (f";\nunder {MIN_AREA * PARAMS_PER_PT2 / 1e6:g}M: {MIN_AREA:g} pt\u00b2)" if floored else ")"),
                    fontsize=7.5, title_fontsize=7.5, labelspacing=2.6, borderpad=1.6, handletextpad=1.8,
                    frameon=True, **kwargs)
    ax.add_artist(leg)
    return leg


def fit_limits(ax, xs, ys, params, xlog=True, ylog=True, pad_pt=6.0):
    """Widen the axis limits (log or linear axes) so each bubble, radius plus ``pad_pt``,
    lies inside the axes. Repeated: widening changes the data-per-point scale."""
    fig = ax.figure
    ident = lambda v: v  # noqa: E731
    tx, ty = (math.log10 if xlog else ident), (math.log10 if ylog else ident)
    ix, iy = ((lambda v: 10 ** v) if xlog else ident), ((lambda v: 10 ** v) if ylog else ident)
    lx, ly = [tx(v) for v in xs], [ty(v) for v in ys]
    x0, x1, y0, y1 = min(lx), max(lx), min(ly), max(ly)
    x0, x1 = (x0 - 0.5, x1 + 0.5) if x0 == x1 else (x0, x1)
    y0, y1 = (y0 - 0.5, y1 + 0.5) if y0 == y1 else (y0, y1)
    for _ in range(3):
        ax.set_xlim(ix(x0), ix(x1))
        ax.set_ylim(iy(y0), iy(y1))
        fig.draw_without_rendering()
        bb = ax.get_window_extent()
        px_per_pt = fig.dpi / 72
        dx = (x1 - x0) / bb.width * px_per_pt
        dy = (y1 - y0) / bb.height * px_per_pt
        r = [radius_pt(p) + pad_pt for p in params]
        nx0, nx1 = min(v - ri * dx for v, ri in zip(lx, r)), max(v + ri * dx for v, ri in zip(lx, r))
        ny0, ny1 = min(v - ri * dy for v, ri in zip(ly, r)), max(v + ri * dy for v, ri in zip(ly, r))
        if nx0 >= x0 and nx1 <= x1 and ny0 >= y0 and ny1 <= y1:
            break
        x0, x1, y0, y1 = min(x0, nx0), max(x1, nx1), min(y0, ny0), max(y1, ny1)
    ax.set_xlim(ix(x0), ix(x1))
    ax.set_ylim(iy(y0), iy(y1))


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def line_boxes(ax, step_px=3.0, half_px=1.5):
    """Small display-space boxes along every line drawn on ``ax`` (a ``place_labels`` avoid
    list): a label placed clear of them does not sit on a line."""
    import numpy as np
    from matplotlib.transforms import Bbox

    ax.figure.draw_without_rendering()
    boxes = []
    for line in ax.get_lines():
        if line.get_linestyle() in ("None", "none", "", " ") or len(line.get_xdata()) < 2:
            continue
        pts = line.get_transform().transform(np.column_stack(line.get_data()))
        for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
            n = max(1, int(np.hypot(x1 - x0, y1 - y0) / step_px))
            for t in np.linspace(0, 1, n + 1):
                x, y = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
                boxes.append(Bbox.from_extents(x - half_px, y - half_px, x + half_px, y + half_px))
    return boxes


def place_labels(ax, xs, ys, texts, params, fontsize=7.5, avoid=()):
    """Annotate each point with its text at the first candidate offset where the label
    box overlaps no placed label, no other bubble and no box in ``avoid`` (display-space
    bboxes, e.g. legends), and stays inside the axes; else where it overlaps least.
    Bigger bubbles are labelled first (their labels have the fewest good places)."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72
    centers = [ax.transData.transform((x, y)) for x, y in zip(xs, ys)]
    radii = [radius_pt(p) * px for p in params]
    discs = [Bbox.from_extents(cx - r, cy - r, cx + r, cy + r) for (cx, cy), r in zip(centers, radii)]
    frame = ax.get_window_extent()
    taken = list(avoid)
    order = sorted(range(len(texts)), key=lambda i: -params[i])
    directions = [(1, 0.25), (1, -0.6), (-1, 0.25), (-1, -0.6), (0, 1), (0, -1.4), (0.7, 0.9), (0.7, -1.2),
                  (-0.7, 0.9), (-0.7, -1.2)]
    for i in order:
        best = None
        for ring in (0, 1, 2, 3):
            gap = 2 + 12 * ring  # points between the bubble's edge and the label
            for dx, dy in directions:
                dist = radii[i] / px + gap
                off = (dx * dist, dy * dist)
                ha = "left" if dx > 0.3 else "right" if dx < -0.3 else "center"
                va = "bottom" if dy > 0.5 else "top" if dy < -0.9 else "center"
                ann = ax.annotate(texts[i], (xs[i], ys[i]), xytext=off, textcoords="offset points",
                                  fontsize=fontsize, ha=ha, va=va)
                box = ann.get_window_extent(renderer).expanded(1.04, 1.12)
                cost = sum(_overlap(box, t) for t in taken)
                cost += sum(_overlap(box, d) for j, d in enumerate(discs) if j != i)
                outside = (max(0, frame.x0 - box.x0) + max(0, box.x1 - frame.x1)
                           + max(0, frame.y0 - box.y0) + max(0, box.y1 - frame.y1))
                cost += 1e4 * outside + ring * 5  # prefer near places
                ann.remove()
                if best is None or cost < best[0]:
                    best = (cost, off, ha, va, ring, box)
                if cost == ring * 5:
                    break
            if best[0] == best[4] * 5:
                break
        cost, off, ha, va, ring, box = best
        # A leader line unless the label sits right beside its bubble.
        beside = ring == 0 and abs(off[1]) < 0.7 * abs(off[0])
        arrow = None if beside else dict(arrowstyle="-", color="0.45", lw=0.6, shrinkA=1, shrinkB=0)
        ax.annotate(texts[i], (xs[i], ys[i]), xytext=off, textcoords="offset points", fontsize=fontsize,
                    ha=ha, va=va, arrowprops=arrow)
        taken.append(box)
