"""Plots, written atomically. matplotlib is imported lazily with the Agg backend."""

import math

from .files import atomic_path
from .units import si


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_log_ticks(axis):
    """Label a log axis at 1, 2 and 5 of each decade in plain numbers (0.5, 2, 20, 200),
    not only at powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _si_ticks(axis):
    """Tick labels in K/M/G (powers of 1000) instead of an offset exponent."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: si(v)))


def _family_colors(families):
    """One colour per family, the same in every figure (families in zoo order)."""
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    order = ["lenet", "alexnet", "zfnet", "vgg", "googlenet", "resnet", "densenet", "xception", "senet",
             "mobilenet", "resnext"]
    extra = [f for f in dict.fromkeys(families) if f not in order]
    return {f: cmap(i % 10) if i < 10 else plt.get_cmap("Dark2")(i % 8) for i, f in enumerate(order + extra)}


def _family_legend(ax, families, colors, loc="upper left", **kwargs):
    """Family legend with one marker size for all (the size legend states the scale)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="", ms=7, markerfacecolor=colors[f], markeredgecolor="black",
                      markeredgewidth=0.5, alpha=0.7) for f in families]
    leg = ax.legend(handles, families, loc=loc, fontsize=7.5, title="family", title_fontsize=7.5, **kwargs)
    ax.add_artist(leg)
    return leg


def _short(model: str) -> str:
    """A label for a model: a file.py:builder reference without its folders."""
    return model.replace("\\", "/").rsplit("/", 1)[-1]


def _floored(params) -> bool:
    from . import bubbles

    return any(bubbles.disc_area(p) > p / bubbles.PARAMS_PER_PT2 for p in params)


def _off_scale(x):
    """Rows whose x is over 100x below the median: drawn on their own they would stretch
    a log axis over empty decades (LeNet-5's 0.3 MMACs against ImageNet's GMACs)."""
    return (x < x.median() / 100) & (len(x) >= 4)


def memory_vs_compute(summary, target, title="Memory vs compute", y="activation_bytes",
                      y_label="activation memory per forward (MiB)"):
    """x = GMACs, y = memory (MiB), log axes, bubble area = params on the one absolute
    scale of ``bubbles.area``, every point labelled; far-off models named in a note."""
    import textwrap

    from . import bubbles

    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.5, 6.6), dpi=120, layout="constrained")
    summary = summary.reset_index(drop=True)
    gmacs = summary["macs"] / 1e9
    mem = summary[y] / 2**20
    off = _off_scale(gmacs) | (mem <= 0)
    on = summary[~off]
    colors = _family_colors(summary["family"])
    for fam, g in on.groupby("family", sort=False):
        ax.scatter(g["macs"] / 1e9, g[y] / 2**20, s=[bubbles.area(p) for p in g["params"]], alpha=0.5,
                   color=colors[fam], edgecolors="black", linewidths=0.6, zorder=2)
        ax.scatter(g["macs"] / 1e9, g[y] / 2**20, s=2, color="black", zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    xs, ys, ps = list(on["macs"] / 1e9), list(on[y] / 2**20), list(on["params"])
    bubbles.fit_limits(ax, xs, ys, ps, pad_pt=10)
    _plain_log_ticks(ax.xaxis)
    _plain_log_ticks(ax.yaxis)
    ax.set_xlabel("compute: GMACs per forward (1 MAC = one fused multiply-add), log scale")
    ax.set_ylabel(y_label + ", log scale")
    ax.grid(True, which="both", alpha=0.25)
    fam_leg = _family_legend(ax, list(dict.fromkeys(on["family"])), colors, loc="upper left")
    size_leg = bubbles.size_legend(ax, loc="lower right", floored=_floored(ps))
    fig.draw_without_rendering()
    avoid = [fam_leg.get_window_extent(), size_leg.get_window_extent()]
    bubbles.place_labels(ax, xs, ys, [f"{_short(m)} ({si(p)})" for m, p in zip(on["model"], ps)], ps,
                         avoid=avoid)
    fig.suptitle(textwrap.fill(title, 95), fontsize=10)
    notes = ["label: model (parameters)"]
    for r in summary[off].itertuples():
        notes.append(f"not drawn, off the scale: {_short(r.model)} ({si(r.macs)} MACs, "
                     f"{getattr(r, y) / 2**20:.2f} MiB, {si(r.params)} params, input {r.input_shape})")
    ax.set_title("; ".join(notes), fontsize=7.5, loc="left", color="0.3")
    _save(fig, target)


def layer_breakdown(rows, model, target, depth=None):
    """Three aligned bar charts over the rows of ``Analysis.breakdown(depth)`` (they partition
    the model: leaves, or the modules at ``depth``, and the ``[own ops]`` rows of modules whose
    own forward code computes, e.g. a ViT's attention): share of params, MACs, activation memory."""
    plt = _plt()
    rows = rows[~rows["aliased"].astype(bool)]
    rows = rows[(rows["params"] > 0) | (rows["macs"] > 0) | (rows["activation_bytes"] > 0)]
    n = len(rows)
    fig, axes = plt.subplots(3, 1, figsize=(max(8, min(24, 0.16 * n + 3)), 8.5), dpi=110, sharex=True,
                             layout="constrained")
    colors = {"Conv2d": "#1f77b4", "Linear": "#ff7f0e", "functional": "#2ca02c"}
    bar_colors = [colors.get(t, "#9e9e9e") for t in rows["type"]]
    x = range(n)
    for ax, col, label in zip(axes, ("params", "macs", "activation_bytes"),
                              ("parameters", "MACs", "activation memory")):
        total = max(rows[col].sum(), 1)
        ax.bar(x, 100 * rows[col] / total, color=bar_colors, edgecolor="none")
        ax.set_ylabel(f"% of {label}")
        shares = {t: 100 * rows.loc[rows["type"] == t, col].sum() / total for t in ("Conv2d", "Linear", "functional")}
        own = f", [own ops] {shares['functional']:.0f}%" if shares["functional"] else ""
        ax.set_title(f"{label}: conv layers {shares['Conv2d']:.0f}%, linear layers {shares['Linear']:.0f}%{own}",
                     fontsize=9, loc="left")
        ax.grid(True, axis="y", alpha=0.3)
    # Every bar gets its name when the labels fit side by side (6.5 pt text, 1.35 line
    # pitch); otherwise the conv and linear bars, which hold the params and MACs, do,
    # and the caption says so. Never a fixed stride (that named only BN bars on ResNet).
    width_pt = fig.get_figwidth() * 72 * 0.9
    fits = int(width_pt / (6.5 * 1.35))
    names = list(rows["layer"])
    if n <= fits:
        ticks, caption = list(x), ""
    else:
        ticks = [i for i, t in enumerate(rows["type"]) if t in ("Conv2d", "Linear", "functional")]
        if len(ticks) > fits:
            ticks = ticks[::math.ceil(len(ticks) / fits)]
        caption = f"x labels: {len(ticks)} of the {n} layers (conv and linear layers); the CSV lists every layer"
    axes[-1].set_xticks(ticks)
    axes[-1].set_xticklabels([names[i] for i in ticks], rotation=90, fontsize=6.5)
    axes[-1].set_xlim(-0.7, n - 0.3)
    if caption:
        axes[-1].set_xlabel(caption, fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("#1f77b4", "#ff7f0e", "#2ca02c", "#9e9e9e")]
    axes[0].legend(handles, ["Conv2d", "Linear", "[own ops]: a module's own code", "other"], fontsize=8,
                   loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    level = f"modules at depth {depth}" if depth else "leaf layers"
    fig.suptitle(f"{model}: where parameters, multiply-adds and activation memory sit\n({level} and [own ops] "
                 "rows: they add up to the model)", fontsize=11)
    _save(fig, target)


def _save(fig, target):
    """Write ``fig`` to ``target`` atomically, its titles wrapped to fit (``titles.py``)."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    from .titles import fit_titles

    plt = _plt()
    constrained = isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)  # else laid out by tight_layout
    fit_titles(fig, relayout=None if constrained else fig.tight_layout)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=str(target).rsplit(".", 1)[-1])
    plt.close(fig)


def _peak_label(frame) -> str:
    """What a sweep's ``peak_bytes`` holds: live tensors, and the running kernel's scratch in
    reports measured since scratch was (a ``peak_scratch_bytes`` column beside it)."""
    if "peak_scratch_bytes" in frame:
        return "inference peak (live tensors + kernel scratch)"
    return "inference peak (live tensors; no kernel scratch)"


def sweep(frame, target, title, latency=True):
    """Per model against batch size: inference peak and training memory (MiB), and with
    latency, ms per batch and images/s with the p20-p80 band of the timed repetitions.
    Log-2 batch axis; one colour per model, line style per quantity; a red ring marks a
    noisy point (p80/p20 above ``SPREAD_LIMIT``, as the table's ``!``)."""
    from matplotlib.lines import Line2D

    from archcost.report.spread import SPREAD_LIMIT

    plt = _plt()
    ok = frame.dropna(subset=["peak_bytes"])
    panels = 3 if latency else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.0 * panels, 4.8), dpi=120, squeeze=False, layout="constrained")
    axes = axes[0]
    cmap = plt.get_cmap("tab10")
    models = list(dict.fromkeys(ok["model"]))
    spread = latency and {"latency_p20_ms", "latency_p80_ms"} <= set(ok.columns)
    for i, model in enumerate(models):
        g = ok[ok["model"] == model].sort_values("batch_size")
        c = cmap(i % 10)
        axes[0].plot(g["batch_size"], g["train_bytes"] / 2**20, "-o", color=c, ms=3)
        axes[0].plot(g["batch_size"], g["peak_bytes"] / 2**20, "--s", color=c, ms=3)
        if latency:
            axes[1].plot(g["batch_size"], g["latency_ms"], "-o", color=c, ms=3)
            axes[2].plot(g["batch_size"], g["images_per_s"], "-o", color=c, ms=3)
            if spread:
                noisy = g[g["latency_p80_ms"] / g["latency_p20_ms"] > SPREAD_LIMIT]
                for ax, ys in ((axes[1], noisy["latency_ms"]), (axes[2], noisy["images_per_s"])):
                    ax.scatter(noisy["batch_size"], ys, s=70, facecolors="none", edgecolors="red", lw=1.2, zorder=4)
                axes[1].fill_between(g["batch_size"], g["latency_p20_ms"], g["latency_p80_ms"], color=c, alpha=0.2,
                                     lw=0)
                axes[2].fill_between(g["batch_size"], g["batch_size"] / g["latency_p80_ms"] * 1e3,
                                     g["batch_size"] / g["latency_p20_ms"] * 1e3, color=c, alpha=0.2, lw=0)
    axes[0].set_ylabel("memory (MiB)")
    axes[0].set_title("training step and inference peak", fontsize=9)
    if latency:
        axes[1].set_ylabel("latency per batch (ms)")
        axes[1].set_title("median" + (", band: p20 to p80" if spread else ""), fontsize=9)
        axes[2].set_ylabel("throughput (images/s)")
        axes[2].set_title("batch / median latency" + (", band: from p80 and p20" if spread else ""), fontsize=9)
    batches = sorted(ok["batch_size"].unique())
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(batches)
        ax.set_xticklabels([str(int(b)) for b in batches])
        ax.set_xlabel("batch size")
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes:
        _plain_log_ticks(ax.yaxis)
    model_handles = [Line2D([], [], color=cmap(i % 10), lw=2) for i in range(len(models))]
    style_handles = [Line2D([], [], color="0.3", ls="-", marker="o", ms=3),
                     Line2D([], [], color="0.3", ls="--", marker="s", ms=3)]
    if spread and (ok["latency_p80_ms"] / ok["latency_p20_ms"] > SPREAD_LIMIT).any():
        ring = Line2D([], [], ls="none", marker="o", ms=8, mfc="none", mec="red")
        axes[1].legend([ring], [f"noisy: p80/p20 > {SPREAD_LIMIT} (median unreliable)"], fontsize=6.5,
                       loc="upper left")
    # one legend, models then line styles, above the data: the top of the axis is raised so no line runs under it
    lo, hi = axes[0].get_ylim()
    axes[0].set_ylim(lo, hi * (hi / lo) ** (0.12 * (len(models) + 3)))
    axes[0].legend(model_handles + style_handles, models + ["train: weights + grads + optimizer state + saved",
                                                            _peak_label(ok)], fontsize=6.5, loc="upper left")
    dropped = frame[frame["peak_bytes"].isna()] if "peak_bytes" in frame else frame.iloc[0:0]
    if len(dropped):
        title += "; out of memory: " + ", ".join(f"{m} at batch {b}" for m, b in zip(dropped["model"], dropped["batch_size"]))
    fig.suptitle(title, fontsize=10)
    _save(fig, target)


def ratio_bars(rows, target, title, xlabel, reference=None, reference_label=""):
    """One bar per variant of its ``ratio_macs`` on a linear axis from zero, each labelled
    with its value, and a reference line (the claim being checked)."""
    plt = _plt()
    labels = [r["variant"] for r in rows]
    vals = [float(r["ratio_macs"]) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.6), dpi=120, layout="constrained")
    ax.barh(range(len(rows)), vals, color="#4c72b0")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    for i, v in enumerate(vals):  # on a white box: never on the reference line
        ax.annotate(f"{v:.2f}", (v, i), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8,
                    bbox=dict(boxstyle="square,pad=0.15", fc="white", ec="none"))
    if reference is not None:  # named in the axis label, not in the plot where bars and labels sit
        ax.axvline(reference, color="0.3", ls="--", lw=1)
        xlabel += f"; dashed line: {reference_label} ({reference:g})"
    ax.set_xlim(0, max(vals + [reference or 0]) * 1.2)
    ax.set_xlabel(xlabel)
    ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    _save(fig, target)


def experiment_bars(rows, target, title, panels=(("params", "parameters"), ("macs", "multiply-adds (MACs)"))):
    """Params and MACs (or the ``panels`` given: (column, axis name)) of an experiment's
    variants as bars on a linear axis from zero (a bar's length is the quantity, so two bars'
    lengths compare as their ratio), each labelled with its exact value and the table's
    ratio (``ratio_params``, ``ratio_macs``: to the first variant unless the row says else)."""
    plt = _plt()
    labels = [r["variant"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(rows) + 1.9), dpi=120, layout="constrained")
    for ax, (key, name) in zip(axes, panels):
        vals = [int(r[key]) for r in rows]
        ratio_key = "ratio_params" if key == "params" else "ratio_macs"
        bars = ax.barh(range(len(rows)), vals, color=["#4c72b0" if i == 0 else "#dd8452" for i in range(len(rows))])
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(labels if ax is axes[0] else [""] * len(rows), fontsize=8)
        ax.invert_yaxis()
        # room for the longest value label (7 pt text, about 4.3 pt a character, on an axis
        # about 330 pt wide), so that no label reaches the frame
        longest = max(len(f" {v:,}  (x00.000)") for v in vals)
        ax.set_xlim(0, max(max(vals), 1) / max(0.3, 1 - longest * 4.3 / 330 - 0.04))
        ax.set_xlabel(f"{name}, linear axis from 0")
        _si_ticks(ax.xaxis)
        for i, (b, v) in enumerate(zip(bars, vals)):
            r = rows[i].get(ratio_key)
            ratio = f"  (x{float(r):.3f})" if i and r is not None and r == r else ""
            ax.text(v, b.get_y() + b.get_height() / 2, f" {v:,}{ratio}", va="center", fontsize=7)
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title + "  (xN: the table's ratio; the first variant in blue; K/M/G = 10^3/10^6/10^9)",
                 fontsize=10)
    _save(fig, target)


def diff_deltas(frame, target, name_a, name_b, limit=60):
    """Per-layer deltas (B - A) of params and MACs as horizontal bars, one row per layer
    that differs (added green, removed red, changed orange), totals in the title."""
    import pandas as pd

    plt = _plt()
    rows = frame[(frame["layer"] != "(total)") & (frame["status"] != "same")]
    rows = rows[(rows["params_delta"].fillna(0) != 0) | (rows["macs_delta"].fillna(0) != 0)]
    cut = ""
    if len(rows) > limit:
        keep = (rows["params_delta"].fillna(0).abs() + rows["macs_delta"].fillna(0).abs() * 0).nlargest(limit).index
        rows = rows.loc[sorted(keep)]
        cut = f" (the {limit} largest params deltas; the CSV lists all)"
    n = max(len(rows), 1)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.19 * n + 2.2), dpi=110, sharey=True, layout="constrained")
    colors = {"added": "#55a868", "removed": "#c44e52", "changed": "#dd8452"}
    names = [r.layer if r.matched_by != "order" or r.layer == r.layer_b else f"{r.layer} -> {r.layer_b}"
             for r in rows.itertuples()]
    for ax, q, label in ((axes[0], "params", "parameters"), (axes[1], "macs", "MACs")):
        vals = rows[f"{q}_delta"].fillna(0).astype(float).tolist()
        ax.barh(range(len(rows)), vals, color=[colors.get(st, "0.5") for st in rows["status"]])
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"delta {label} (B - A; K/M = 10^3/10^6)")
        ax.grid(True, axis="x", alpha=0.3)
        _si_ticks(ax.xaxis)
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels(names, fontsize=6.5)
    axes[0].invert_yaxis()
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    axes[1].legend(handles, ["added (only in B)", "removed (only in A)", "changed"], fontsize=7, loc="best")
    tot = frame[frame["layer"] == "(total)"].iloc[0]
    fmt = lambda v: "-" if v is None or v is pd.NA or v != v else f"{int(v):+,}"  # noqa: E731
    fig.suptitle(f"{name_b} against {name_a}: per-layer deltas{cut}\ntotal: {fmt(tot['params_delta'])} params, "
                 f"{fmt(tot['macs_delta'])} MACs (one fused multiply-add = 1)", fontsize=10)
    _save(fig, target)


PROTOCOL_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]  # "o": a small dot


def accuracy_vs_cost(frame, target, x="macs", title="Published top-1 accuracy against cost"):
    """Top-1 (%) against GMACs (log) or a memory column (MiB, log): bubble area = params
    on the absolute scale, colour = family, marker = accuracy protocol (source kind and
    dataset), so figures measured differently are marked apart, never mixed silently.
    Rows without a top-1 or not on ImageNet are named in a note, not drawn."""
    import textwrap

    from matplotlib.lines import Line2D

    from . import bubbles

    plt = _plt()
    frame = frame.reset_index(drop=True)
    imagenet = frame["accuracy_dataset"].str.contains("ImageNet|ILSVRC", regex=True)
    ok = frame[frame["top1"].notna() & imagenet]
    left = frame[~(frame["top1"].notna() & imagenet)]
    xval = ok[x] / (1e9 if x == "macs" else 2**20)
    protocols = list(ok["protocol"].value_counts().index)  # the most common gets the circle
    markers = {p: PROTOCOL_MARKERS[i % len(PROTOCOL_MARKERS)] for i, p in enumerate(protocols)}
    colors = _family_colors(ok["family"])
    fig, ax = plt.subplots(figsize=(11, 7.2), dpi=120, layout="constrained")
    for (fam, proto), g in ok.groupby(["family", "protocol"], sort=False):
        gx = g[x] / (1e9 if x == "macs" else 2**20)
        # Discs for every protocol (areas stay comparable); the protocol is the centre mark.
        ax.scatter(gx, g["top1"], s=[bubbles.area(p) for p in g["params"]], alpha=0.5,
                   color=colors[fam], edgecolors="black", linewidths=0.6, zorder=2)
        ax.scatter(gx, g["top1"], s=14 if markers[proto] != "o" else 2, marker=markers[proto], color="black",
                   zorder=3)
    ax.set_xscale("log")
    xs, ys, ps = list(xval), list(ok["top1"]), list(ok["params"])
    bubbles.fit_limits(ax, xs, ys, ps, ylog=False, pad_pt=12)
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("compute: GMACs per forward at the model's input (1 MAC = one fused multiply-add), log scale"
                  if x == "macs" else {"train_bytes": "training memory, batch 1: weights + grads + SGD state + "
                                       "saved activations (MiB), log scale",
                                       "peak_bytes": "inference peak activation memory, batch 1 (MiB), log scale"
                                       }.get(x, f"{x} (MiB), log scale"))
    ax.set_ylabel("published top-1 accuracy (%)")
    ax.grid(True, which="both", alpha=0.25)
    fams = list(dict.fromkeys(ok["family"]))
    fam_leg = _family_legend(ax, fams, colors, loc="lower right", ncols=2)
    proto_handles = [Line2D([], [], marker=markers[p], ls="", ms=4 if markers[p] != "o" else 2, color="black")
                     for p in protocols]
    proto_leg = ax.legend(proto_handles, [f"{p} ({(ok['protocol'] == p).sum()})" for p in protocols],
                          loc="upper left", fontsize=7.5, title="accuracy protocol (mark at the bubble's centre)", title_fontsize=7.5)
    ax.add_artist(proto_leg)
    size_leg = bubbles.size_legend(ax, loc="lower left", floored=_floored(ps))
    fig.draw_without_rendering()
    avoid = [lg.get_window_extent() for lg in (fam_leg, proto_leg, size_leg)]
    bubbles.place_labels(ax, xs, ys, list(ok["model"]), ps, fontsize=7, avoid=avoid)
    fig.suptitle(title, fontsize=11)
    notes = ["Accuracies are the published figures stored with each model (`archcost list --format csv` "
             "gives sources); ImageNet-1k val = ILSVRC-2012 val. Papers' crops and training recipes differ "
             "from torchvision's: compare within one centre mark."]
    if len(left):
        notes.append("Not drawn: " + "; ".join(
            f"{r.model} ({'top-5 only' if r.top1 != r.top1 or r.top1 is None else f'top-1 {r.top1}%'}, "
            f"{r.accuracy_dataset})" for r in left.itertuples()) + ".")
    ax.set_title(textwrap.fill(" ".join(notes), 160), fontsize=7.5, loc="left", color="0.3")
    _save(fig, target)

