"""Plots, written atomically. matplotlib is imported lazily with the Agg backend."""

import math

from .files import atomic_path


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


def _off_scale(x, frame):
    """Rows whose x is over 100x below the median: drawn on their own they would stretch
    a log axis over empty decades (LeNet-5's 0.3 MMACs against ImageNet's GMACs)."""
    return x < x.median() / 100


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
    off = _off_scale(gmacs, summary) | (mem <= 0)
    on = summary[~off]
    colors = _family_colors(summary["family"])
    for fam, g in on.groupby("family", sort=False):
        ax.scatter(g["macs"] / 1e9, g[y] / 2**20, s=[bubbles.area(p) for p in g["params"]], alpha=0.5,
                   color=colors[fam], edgecolors="black", linewidths=0.6, zorder=2)
        ax.scatter(g["macs"] / 1e9, g[y] / 2**20, s=4, color="black", zorder=3)
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
    size_leg = bubbles.size_legend(ax, loc="lower right")
    fig.canvas.draw()
    avoid = [fam_leg.get_window_extent(), size_leg.get_window_extent()]
    bubbles.place_labels(ax, xs, ys, [f"{m} ({p / 1e6:.1f}M)" for m, p in zip(on["model"], ps)], ps,
                         avoid=avoid)
    fig.suptitle(textwrap.fill(title, 95), fontsize=10)
    notes = ["label: model (parameters)"]
    for r in summary[off].itertuples():
        notes.append(f"not drawn, off the scale: {r.model} ({getattr(r, 'macs') / 1e6:.2f} MMACs, "
                     f"{getattr(r, y) / 2**20:.2f} MiB, {r.params / 1e3:.1f}K params, input {r.input_shape})")
    ax.set_title("; ".join(notes), fontsize=7.5, loc="left", color="0.3")
    _save(fig, target)


def layer_breakdown(layers, model, target):
    """Three aligned bar charts over the leaf layers: share of params, MACs, activation memory."""
    plt = _plt()
    rows = layers[layers["is_leaf"] & ~layers["aliased"]]
    rows = rows[(rows["params"] > 0) | (rows["macs"] > 0) | (rows["activation_bytes"] > 0)]
    n = len(rows)
    fig, axes = plt.subplots(3, 1, figsize=(max(8, min(24, 0.28 * n + 3)), 8.5), dpi=110, sharex=True)
    colors = {"Conv2d": "#1f77b4", "Linear": "#ff7f0e"}
    bar_colors = [colors.get(t, "#9e9e9e") for t in rows["type"]]
    x = range(n)
    for ax, col, label in zip(axes, ("params", "macs", "activation_bytes"),
                              ("parameters", "MACs", "activation memory")):
        total = max(rows[col].sum(), 1)
        ax.bar(x, 100 * rows[col] / total, color=bar_colors, edgecolor="none")
        ax.set_ylabel(f"% of {label}")
        shares = {t: 100 * rows.loc[rows["type"] == t, col].sum() / total for t in ("Conv2d", "Linear")}
        ax.set_title(f"{label}: conv layers {shares['Conv2d']:.0f}%, linear layers {shares['Linear']:.0f}%",
                     fontsize=9, loc="left")
        ax.grid(True, axis="y", alpha=0.3)
    step = max(1, math.ceil(n / 60))
    axes[-1].set_xticks(list(x)[::step])
    axes[-1].set_xticklabels(list(rows["layer"])[::step], rotation=90, fontsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("#1f77b4", "#ff7f0e", "#9e9e9e")]
    axes[0].legend(handles, ["Conv2d", "Linear", "other"], fontsize=8, loc="upper left")
    fig.suptitle(f"{model}: where parameters, multiply-adds and activation memory sit")
    fig.tight_layout()
    _save(fig, target)


def _save(fig, target):
    plt = _plt()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=str(target).rsplit(".", 1)[-1])
    plt.close(fig)


def sweep(frame, target, title, latency=True):
    """Per model against batch size: inference peak and training memory (MiB), and with
    latency, ms per batch and images/s. Log-2 batch axis."""
    plt = _plt()
    ok = frame.dropna(subset=["peak_bytes"])
    panels = 3 if latency else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.4), dpi=120, squeeze=False)
    axes = axes[0]
    cmap = plt.get_cmap("tab10")
    for i, (model, g) in enumerate(ok.groupby("model", sort=False)):
        c = cmap(i % 10)
        axes[0].plot(g["batch_size"], g["train_bytes"] / 2**20, "-o", color=c, ms=3, label=f"{model} train")
        axes[0].plot(g["batch_size"], g["peak_bytes"] / 2**20, "--s", color=c, ms=3, label=f"{model} inference peak")
        if latency:
            axes[1].plot(g["batch_size"], g["latency_ms"], "-o", color=c, ms=3, label=model)
            axes[2].plot(g["batch_size"], g["images_per_s"], "-o", color=c, ms=3, label=model)
    axes[0].set_ylabel("memory (MiB)")
    axes[0].set_title("train (weights+grads+state+saved) and inference peak", fontsize=9)
    if latency:
        axes[1].set_ylabel("latency per batch (ms, median)")
        axes[2].set_ylabel("throughput (images/s)")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=6)
    if latency:
        axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def experiment_bars(rows, target, title):
    """Params and MACs of an experiment's variants, side by side (log scale), labelled."""
    plt = _plt()
    labels = [r["variant"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.55 * len(rows) + 1.8), dpi=120)
    for ax, key, name in ((axes[0], "params", "parameters"), (axes[1], "macs", "multiply-adds (MACs)")):
        vals = [max(r[key], 1) for r in rows]
        bars = ax.barh(range(len(rows)), vals, color=["#4c72b0" if i == 0 else "#dd8452" for i in range(len(rows))])
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(labels if ax is axes[0] else [""] * len(rows), fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel(name)
        for b, v in zip(bars, vals):
            ax.text(v, b.get_y() + b.get_height() / 2, f" {v:,}", va="center", fontsize=7)
        ax.set_xlim(min(vals) / 3, max(vals) * 30)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


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
        ax.scatter(gx, g["top1"], s=14 if markers[proto] != "o" else 4, marker=markers[proto], color="black",
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
    size_leg = bubbles.size_legend(ax, loc="lower left")
    fig.canvas.draw()
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

