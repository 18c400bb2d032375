"""The plot of ``archcost fit --memory GPU``: the device ledger's parts stacked against the
batch size, one panel per model, with the budget and the answer marked: where each part grows."""

from .plots import _plt, _save

PARTS = ["tensors", "allocator rounding", "cuBLAS workspace", "cuDNN workspace", "reserved but free", "CUDA context"]
COLORS = {"tensors": "#4c72b0", "allocator rounding": "#dd8452", "cuBLAS workspace": "#55a868",
          "cuDNN workspace": "#8172b3", "reserved but free": "#c44e52", "CUDA context": "#937860"}


def ledger_parts(curve, answers, usable_bytes: int, limit_bytes: int, target, title: str):
    """``curve``: rows with model, batch_size and one column per part of ``PARTS`` (bytes; the
    reserved-but-free part as on the target, where the allocator releases its cache when
    short); ``answers``: rows with model and batch (0: batch 1 does not fit); ``limit_bytes``:
    usable memory less the user's reserve."""
    plt = _plt()
    models = list(dict.fromkeys(curve["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(max(6.5, 4.8 * len(models)), 5), dpi=120, squeeze=False)
    gib = 2**30
    for ax, model in zip(axes[0], models):
        g = curve[curve["model"] == model].sort_values("batch_size")
        ax.stackplot(g["batch_size"], *[g[p] / gib for p in PARTS], labels=PARTS,
                     colors=[COLORS[p] for p in PARTS], alpha=0.85)
        ax.axhline(usable_bytes / gib, color="black", ls=":", lw=1, label=f"usable {usable_bytes / gib:.3g} GiB")
        if limit_bytes != usable_bytes:
            ax.axhline(limit_bytes / gib, color="crimson", ls="--", lw=1.2,
                       label=f"usable - reserve {limit_bytes / gib:.3g} GiB")
        b = int(answers.loc[answers["model"] == model, "batch"].iloc[0])
        if b:
            ax.axvline(b, color="crimson", lw=1)
            ax.annotate(f"fits: {b}", (b, 0), textcoords="offset points", xytext=(4, 6), fontsize=8, color="crimson")
        ax.set_xscale("log", base=2)
        from matplotlib.ticker import ScalarFormatter

        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("batch size")
        ax.set_ylabel("GiB on the device (predicted)")
        ax.set_title(model, fontsize=10)
        ax.grid(True, alpha=0.25)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, target)
    return target
