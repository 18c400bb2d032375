"""Plots of checkpointing: a plan against its references, and Chen et al.'s sqrt(n) claim
against depth."""

import math

from .plots import _plain_log_ticks, _plt, _save, _si_ticks
from .units import human_bytes, si

GIB = 2**30
STYLES = {"none": ("#7f7f7f", "o", "no checkpointing"), "blocks": ("#1f77b4", "s", "every block"),
          "sqrt-n": ("#ff7f0e", "^", "sqrt(n) segments (Chen et al.)"), "plan": ("#2ca02c", "*", "plan")}


def plan_chart(rows, budget_bytes, title, path):
    """Memory needed (peak + input) against recompute MACs for the plan and each reference
    (``rows``: dicts with checkpoint, needed_bytes, recompute_macs), with the budget as a line
    named in the legend. Each point's label goes where it covers no other label, no point, the
    budget line or the legend (``bubbles.place_labels``)."""
    from .bubbles import PARAMS_PER_PT2, line_boxes, place_labels

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for r in rows:
        color, marker, name = STYLES.get(r["checkpoint"], ("black", "o", r["checkpoint"]))
        ax.scatter([r["recompute_macs"]], [r["needed_bytes"] / GIB], color=color, marker=marker,
                   s=160 if marker == "*" else 60, zorder=3, label=name)
    ax.axhline(budget_bytes / GIB, color="#d62728", ls="--", lw=1, label=f"budget {human_bytes(budget_bytes)}")
    _si_ticks(ax.xaxis)
    ax.set_xlabel("recompute MACs per step (backward's extra forward work)")
    ax.set_ylabel("memory needed: training-step peak + input (GiB)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.25)
    legend = ax.legend(fontsize=8, loc="upper right")
    top = max([r["recompute_macs"] for r in rows] + [1])
    ax.set_xlim(-0.03 * top, 1.45 * top)
    ax.set_ylim(0, 1.25 * max([r["needed_bytes"] for r in rows] + [budget_bytes]) / GIB)
    fig.tight_layout()
    lines = line_boxes(ax)  # the budget line (drawn first: the legend's box is then where it is saved)
    avoid = [legend.get_window_extent()] + lines
    marker_params = [math.pi * 5.0**2 * PARAMS_PER_PT2] * len(rows)  # a disc of 5 pt around each marker
    place_labels(ax, [r["recompute_macs"] for r in rows], [r["needed_bytes"] / GIB for r in rows],
                 [f"{human_bytes(r['needed_bytes'])}, +{si(r['recompute_macs'])} MACs" for r in rows],
                 marker_params, fontsize=8, avoid=avoid)
    _save(fig, path)


def checkpointing_depth(rows, path):
    """``reproduce sqrt-n-checkpointing``: left, the feature maps alive at the step's peak
    (with their gradients) against the number of blocks, log-log, with n and sqrt(n) slopes for reference;
    right, recompute MACs over one forward's. One legend for both, below them: the left
    panel's eleven entries leave no corner free of points."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6.0), dpi=120, layout="constrained")
    named = []  # (blocks, GiB, model): the zoo models' points, labelled by name
    families = {"resnet-chain": ("-", "ResNet chain"), "densenet": (":", "DenseNet-BC"),
                "resnet": ("none", "ResNet-152")}
    for family, (ls, title) in families.items():
        for label in ("none", "blocks", "sqrt-n"):
            pts = sorted((r["blocks"], r["activation_bytes"] / GIB, r["ratio_macs"], r["model"]) for r in rows
                         if r["family"] == family and r["checkpoint"] == label)
            if not pts:
                continue
            color, marker, name = STYLES[label]
            n, mem, ratio, models = zip(*pts)
            text = f"{title}: {name}"
            left.plot(n, mem, ls=ls, marker=marker, color=color, label=text)
            if label != "none":
                right.plot(n, ratio, ls=ls, marker=marker, color=color, label=text)
            if label == "none" and family != "resnet-chain":
                named += list(zip(n, mem, models))
    # reference slopes from the smallest ResNet's sqrt(n) point
    base = min(((r["blocks"], r["activation_bytes"] / GIB) for r in rows
                if r["family"] == "resnet-chain" and r["checkpoint"] == "sqrt-n"), default=None)
    if base:
        n0, m0 = base
        xs = [n0, max(r["blocks"] for r in rows if r["family"] == "resnet-chain")]
        left.plot(xs, [m0 * (x / n0) for x in xs], color="black", lw=0.7, ls="--", label="slope 1 (linear in n)")
        left.plot(xs, [m0 * (x / n0) ** 0.5 for x in xs], color="black", lw=0.7, ls="-.", label="slope 1/2 (sqrt n)")
    left.set_xscale("log")
    left.set_yscale("log")
    _plain_log_ticks(left.xaxis)
    _plain_log_ticks(left.yaxis)
    left.set_xlabel("blocks n (bottlenecks, dense layers), log scale")
    left.set_ylabel("feature maps + their gradients at the step's peak (GiB), log scale")
    batch = int(rows[0]["batch_size"]) if rows else ""
    left.set_title(f"memory against depth, batch {batch}, float32, SGD", fontsize=9)
    left.grid(True, which="both", alpha=0.25)
    lo, hi = left.get_ylim()
    left.set_ylim(lo, hi * (hi / lo) ** 0.06)  # room above the top point's label
    if named:
        from .bubbles import PARAMS_PER_PT2, line_boxes, place_labels

        xs, ys, names = zip(*named)
        place_labels(left, xs, ys, names, [math.pi * 4.0**2 * PARAMS_PER_PT2] * len(xs), fontsize=7,
                     avoid=line_boxes(left))
    right.axhline(1.0, color="black", lw=0.7, ls="--")
    right.set_xscale("log")
    # at the axes' left edge whatever its limits (x in axes fraction, y in data)
    right.annotate("one extra forward", (0, 1.0), xycoords=right.get_yaxis_transform(), textcoords="offset points",
                   xytext=(4, 3), fontsize=8)
    _plain_log_ticks(right.xaxis)
    right.set_xlabel("blocks n, log scale")
    right.set_ylabel("recompute MACs / forward MACs")
    right.set_title("the price: recomputation per step, in forwards", fontsize=9)
    right.set_ylim(0, 1.3)
    right.grid(True, which="both", alpha=0.25)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=7)
    _save(fig, path)
