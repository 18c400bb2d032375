"""The plot of ``archcost fit``: memory needed against batch size, one curve per model,
with the budget line and each model's answer marked."""

from .plots import _plt, _save


def fit_curves(curve, answers, budget_bytes: int, target, title: str,
               y_label: str = "memory needed (GiB): train peak + input batch"):
    """``curve``: rows with model, batch_size, needed_bytes (measured candidates);
    ``answers``: rows with model and batch (0 = batch 1 does not fit)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    cmap = plt.get_cmap("tab10")
    gib = 2**30
    for i, (model, group) in enumerate(curve.groupby("model", sort=False)):
        ans = answers[answers["model"] == model]
        b = int(ans["batch"].iloc[0]) if len(ans) else 0
        g = group.sort_values("batch_size")
        g = g[g["batch_size"] <= 4 * max(b, 1)]  # the search's far overshoots would flatten the plot
        color = cmap(i % 10)
        ax.plot(g["batch_size"], g["needed_bytes"] / gib, marker="o", markersize=3.5, lw=1.4,
                color=color, label=model)
        if b > 0:
            y = float(g.loc[g["batch_size"] == b, "needed_bytes"].iloc[0]) / gib
            ax.scatter([b], [y], s=70, color=color, edgecolors="black", zorder=5)
            ax.annotate(f"{model}: {b}", (b, y), textcoords="offset points", xytext=(8, -14 - 11 * i),
                        fontsize=8, color=color, fontweight="bold")
    ax.axhline(budget_bytes / gib, color="crimson", ls="--", lw=1.2,
               label=f"budget {budget_bytes / gib:.3g} GiB")
    ax.set_xscale("log", base=2)
    from matplotlib.ticker import ScalarFormatter

    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_yscale("log")
    ax.set_xlabel("batch size (measured candidates; big dot = largest that fits)")
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    _save(fig, target)
    return target
