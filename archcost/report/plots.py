"""Plots, written atomically. matplotlib is imported lazily with the Agg backend."""

import math

from .files import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def memory_vs_compute(summary, target, title="Memory vs compute", y="activation_bytes",
                      y_label="activation memory per forward (MiB)"):
    """x = GMACs, y = memory (MiB), bubble area proportional to parameters, every point labelled."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    gmacs = summary["macs"] / 1e9
    mem = summary[y] / 2**20
    pmax = max(summary["params"].max(), 1)
    sizes = 1500 * summary["params"] / pmax + 15
    families = list(dict.fromkeys(summary["family"]))
    cmap = plt.get_cmap("tab10")
    for i, fam in enumerate(families):
        sel = summary["family"] == fam
        ax.scatter(gmacs[sel], mem[sel], s=sizes[sel], alpha=0.45, color=cmap(i % 10),
                   edgecolors="black", linewidths=0.6, label=fam)
    placed = []  # stagger labels of points that sit close together (in log space)
    for name, x, yv, p in sorted(zip(summary["model"], gmacs, mem, summary["params"]), key=lambda r: r[1]):
        lx, ly = math.log10(max(x, 1e-9)), math.log10(max(yv, 1e-9))
        near = sum(1 for px, py in placed if abs(px - lx) < 0.25 and abs(py - ly) < 0.15)
        placed.append((lx, ly))
        ax.annotate(f"{name} ({p / 1e6:.1f}M)", (x, yv), textcoords="offset points",
                    xytext=(7, 4 - 11 * near), fontsize=7.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute: GMACs per forward, log scale (1 MAC = one fused multiply-add)")
    ax.set_ylabel(y_label + ", log scale")
    ax.set_title(f"{title} (bubble area ~ parameters, in parentheses; batch {int(summary['batch_size'].iloc[0])})",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    leg = ax.legend(loc="upper left", fontsize=8, markerscale=0.3, title="family")
    leg.get_title().set_fontsize(8)
    fig.tight_layout()
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
