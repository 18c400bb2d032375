"""The cost of a generated token against context length (``archcost sweep --decode``)."""

from .plots import _plain_log_ticks, _plt, _save, _short
from .units import si


def _per_token(g, column):
    return g[column] / (g["batch_size"] * g["new_tokens"])


def decode_sweep(frame, target, title):
    """Three panels against the context N (log 2): MACs (linear from 0 when all models are
    within 10x of each other, else log), MiB moved (read + written) and the roofline's time
    bound (the floor of ``roofline.decode``), each per token. One colour per model; solid: a
    decode step with N tokens cached; dashed: the prefill of N tokens divided by N; dotted:
    the decode step's weights alone (second panel). A filled marker is a memory-bound point,
    a hollow one a compute-bound point."""
    from matplotlib.lines import Line2D

    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15.0, 4.8), dpi=120, layout="constrained")
    cmap = plt.get_cmap("tab10")
    models = list(dict.fromkeys(frame["model"]))
    for i, model in enumerate(models):
        c = cmap(i % 10)
        rows = frame[frame["model"] == model]
        for phase, ls in (("decode", "-"), ("prefill", "--")):
            g = rows[rows["phase"] == phase].sort_values("context")
            moved = g["bytes_moved"] / 2**20
            for ax, y in zip(axes, (_per_token(g, "macs"), moved / (g["batch_size"] * g["new_tokens"]),
                                    g["bound_per_token_ms"])):
                ax.plot(g["context"], y, ls, color=c, lw=1.5)
                memory = (g["bound"] == "memory").to_numpy()
                ax.scatter(g["context"][memory], y[memory], color=c, s=14, zorder=3)
                ax.scatter(g["context"][~memory], y[~memory], facecolors="white", edgecolors=[c], s=14, zorder=3)
            if phase == "decode":
                axes[1].plot(g["context"], g["weight_bytes_read"] / 2**20 / g["batch_size"], ":", color=c, lw=1.2)
    contexts = sorted(frame["context"].unique())
    labels = (("MACs per token", "multiply-adds"), ("MiB per token (read + written)", "bytes moved"),
              ("time bound per token (ms)", "roofline bound on " + str(frame["target"].iloc[0])))
    for ax, (ylabel, head) in zip(axes, labels):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(contexts)
        ax.set_xticklabels([str(int(n)) for n in contexts], rotation=45 if len(contexts) > 8 else 0)
        ax.set_xlabel("context N (tokens in the KV cache)")
        ax.set_ylabel(ylabel)
        ax.set_title(head, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    from matplotlib.ticker import FuncFormatter

    macs = _per_token(frame, "macs")
    if macs.max() < 10 * macs.min():  # one scale: linear from zero, the attention's growth as it is
        axes[0].set_yscale("linear")
        axes[0].set_ylim(bottom=0)
    else:
        _plain_log_ticks(axes[0].yaxis)
    axes[0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: si(v)))
    for ax in axes[1:]:
        _plain_log_ticks(ax.yaxis)
    model_handles = [Line2D([], [], color=cmap(i % 10), lw=2) for i in range(len(models))]
    first = axes[0].legend(model_handles, [_short(m) for m in models], fontsize=7, loc="center left",
                           title="model", title_fontsize=7)
    axes[0].add_artist(first)
    grey = "0.3"
    axes[0].legend([Line2D([], [], color=grey, ls="-"), Line2D([], [], color=grey, ls="--"),
                    Line2D([], [], color=grey, ls="", marker="o", ms=4),
                    Line2D([], [], color=grey, ls="", marker="o", ms=4, markerfacecolor="white")],
                   ["decode: 1 token, N cached", "prefill of N tokens, / N", "memory-bound", "compute-bound"],
                   fontsize=6.5, loc="center right")
    axes[1].legend([Line2D([], [], color=grey, ls="-"), Line2D([], [], color=grey, ls=":")],
                   ["decode: weights + KV cache", "decode: weights alone"], fontsize=6.5, loc="best")
    fig.suptitle(title, fontsize=10)
    _save(fig, target)
