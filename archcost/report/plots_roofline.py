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
