"""The roofline plot: attainable FLOP/s against arithmetic intensity, log-log."""

from .plots import _plt, _save

TYPE_COLORS = {"Conv2d": "#1f77b4", "Linear": "#ff7f0e", "BatchNorm2d": "#2ca02c", "ReLU": "#d62728",
               "MaxPool2d": "#9467bd", "AvgPool2d": "#8c564b", "AdaptiveAvgPool2d": "#8c564b",
               "functional": "#7f7f7f"}


def roofline(layers, summary, path, target, title):
    """``layers``: rows with flops, bytes_read, bytes_written, arithmetic_intensity,
    time_bound_ms, share_of_bound, type (and optionally latency_ms); ``summary``: the model
    row (peak_tflops, bandwidth_gbs, ridge_flop_per_byte, flops, bytes_moved, time_bound_ms).
    A point per layer with MACs at (intensity, FLOPs / time bound), coloured by layer type,
    area by its share of the time bound; the model's aggregate point as a star; measured
    FLOP/s as hollow circles when the rows carry latency_ms."""
    plt = _plt()
    peak = summary["peak_tflops"] * 1e12
    bw = summary["bandwidth_gbs"] * 1e9
    ridge = summary["ridge_flop_per_byte"]
    pts = layers[(layers["flops"] > 0) & layers["arithmetic_intensity"].notna()]
    xs = list(pts["arithmetic_intensity"].astype(float))
    lo = min(xs + [ridge / 100, summary["arithmetic_intensity"] or ridge]) / 3
    hi = max(xs + [ridge * 30]) * 3
    fig, ax = plt.subplots(figsize=(9.5, 6.2), dpi=120)
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(grid, [min(peak, x * bw) for x in grid], color="black", lw=1.6, zorder=2,
            label=f"roof: {peak / 1e12:.3g} TFLOP/s, {bw / 1e9:.4g} GB/s")
    ax.axvline(ridge, color="black", ls=":", lw=1)
    ax.annotate(f"ridge {ridge:.3g} FLOP/byte", (ridge, peak), textcoords="offset points", xytext=(5, -14),
                fontsize=8)
    sizes = 20 + 1200 * pts["share_of_bound"].fillna(0).astype(float)
    seen = []
    for kind in pts["type"].unique():
        sel = pts["type"] == kind
        color = TYPE_COLORS.get(kind, "#17becf" if len(seen) % 2 else "#bcbd22")
        seen.append(kind)
        achieved = pts["flops"][sel] / (pts["time_bound_ms"][sel] / 1e3)
        ax.scatter(pts["arithmetic_intensity"][sel], achieved, s=sizes[sel], color=color, alpha=0.55,
                   edgecolors="black", linewidths=0.5, zorder=3, label=kind)
        if "latency_ms" in pts:
            t = pts["latency_ms"][sel]
            ok = t.notna() & (t > 0)
            if ok.any():
                ax.scatter(pts["arithmetic_intensity"][sel][ok], (pts["flops"][sel] / (t / 1e3))[ok], s=18,
                           facecolors="none", edgecolors=color, linewidths=1.0, zorder=4)
    model_x = summary["arithmetic_intensity"]
    if model_x:
        model_y = summary["flops"] / (summary["time_bound_ms"] / 1e3)
        ax.scatter([model_x], [model_y], marker="*", s=380, color="gold", edgecolors="black", zorder=5,
                   label="whole model")
        if summary.get("latency_ms") == summary.get("latency_ms") and summary.get("latency_ms"):
            ax.scatter([model_x], [summary["flops"] / (summary["latency_ms"] / 1e3)], marker="*", s=200,
                       facecolors="none", edgecolors="black", zorder=5, label="whole model, measured")
    hidden = int(((layers["flops"] == 0) & (layers["kernels"] > 0)).sum())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved; FLOPs = 2 x MACs), log scale")
    ax.set_ylabel("attainable FLOP/s (FLOPs / time bound), log scale")
    sub = f"{target}; point area ~ share of the time bound"
    if "latency_ms" in pts:
        sub += "; hollow: measured"
    if hidden:
        sub += f"\n{hidden} layers without MACs (ReLU, pooling, ...) have intensity 0 and are not drawn"
    ax.set_title(f"{title}\n{sub}", fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    leg = ax.legend(fontsize=7.5, loc="lower right", markerscale=0.5)
    for h in leg.legend_handles:
        if hasattr(h, "set_sizes"):
            h.set_sizes([40])
    fig.tight_layout()
    _save(fig, path)


def batch_experiment(rows, path):
    """``reproduce roofline``: left, arithmetic intensity against batch size for VGG16's
    conv and FC layers with the GPU's ridge; right, the line-up's time bound per image at
    batch 1 and 256, hatched by the share spent in memory-bound layers."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2), dpi=120)
    curves, ridges = {}, {}
    for r in rows:
        if r["variant"].startswith("VGG16"):
            curves.setdefault(r["variant"], []).append((r["batch_size"], r["arithmetic_intensity"]))
            ridges.setdefault(round(float(r["ridge_flop_per_byte"]), 6), []).append(r["variant"])
    colors = ["#1f77b4", "#ff7f0e", "#d62728"]
    for (label, pts), color, style in zip(curves.items(), colors, ("-", "--", "-.")):
        xs, ys = zip(*sorted(pts))
        left.plot(xs, ys, marker="o", ls=style, color=color, label=label)
    gpu = next(r["variant"].split(" on ", 1)[1] for r in rows if " on " in r["variant"])
    # Each group's own ridge: its FLOPs at the rate its operators run at (on an A100,
    # float32 convolutions as TF32, Linear layers at FP32), so the FC layers cross theirs
    # long before the convolutions' ridge.
    for i, (ridge, variants) in enumerate(sorted(ridges.items(), reverse=True)):
        whose = sorted({v.split(" (")[0].replace("VGG16 ", "") for v in variants})
        left.axhline(ridge, color="black", ls=":", lw=1)
        # the highest above its line at the left; the others below theirs at the right, where
        # the curves that cross them are already above
        text = f"ridge for {', '.join(whose)}: {ridge:.3g} FLOP/byte"
        left.annotate(f"{gpu} {text}" if i == 0 else text,
                      (0 if i == 0 else 1, ridge), xycoords=left.get_yaxis_transform(), textcoords="offset points",
                      xytext=(3, 4) if i == 0 else (-3, -11), ha="left" if i == 0 else "right", fontsize=8)
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("batch size (log scale)")
    left.set_ylabel("arithmetic intensity, FLOP/byte (FLOPs = 2 x MACs), log scale")
    left.set_title("VGG16, float32: intensity grows with batch where weights dominate the bytes;\na layer group is compute-bound above its ridge (dotted)", fontsize=9)
    left.grid(True, which="both", alpha=0.25)
    left.legend(fontsize=8, loc="lower right")
    lineup = [r for r in rows if " on " in r["variant"]]
    models = list(dict.fromkeys(r["variant"].split(" on ")[0] for r in lineup))
    batches = sorted({r["batch_size"] for r in lineup})
    width = 0.8 / len(batches)
    for j, b in enumerate(batches):
        sel = {r["variant"].split(" on ")[0]: r for r in lineup if r["batch_size"] == b}
        xs = [i + (j - (len(batches) - 1) / 2) * width for i in range(len(models))]
        us = [sel[m]["time_bound_per_image_ms"] * 1e3 for m in models]
        mem = [u * sel[m]["bound_share_memory"] for u, m in zip(us, models)]
        right.bar(xs, us, width, color=colors[j % 3], alpha=0.45, label=f"batch {int(b)}: time bound per image")
        right.bar(xs, mem, width, color="none", edgecolor="black", hatch="//", lw=0.6,
                  label="of which memory-bound layers" if j == 0 else None)
        for x, u, m in zip(xs, us, models):
            right.annotate(f"{sel[m]['bound_share_memory']:.0%}", (x, u), ha="center", fontsize=7,
                           textcoords="offset points", xytext=(0, 2))
    right.set_xticks(range(len(models)))
    right.set_xticklabels(models)
    right.set_yscale("log")
    right.set_ylabel("least time per image (us), log scale")
    right.set_title(f"{gpu}: least time per image (labels: share in memory-bound layers)", fontsize=9)
    right.legend(fontsize=8)
    right.grid(True, axis="y", which="both", alpha=0.25)
    fig.tight_layout()
    _save(fig, path)
