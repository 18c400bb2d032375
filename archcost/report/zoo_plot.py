"""The zoo's figure: MACs against parameters and against activation memory, one point per
model that counted, families coloured (the largest families by model count; the rest grey)."""

from .plots import _plain_log_ticks, _plt, _save

TOP_FAMILIES = 14  # colours the eye tells apart; smaller families are drawn grey, named in the note


def zoo_figure(frame, target, title: str) -> None:
    """Two log-log panels from a zoo CSV's rows (``status == ok``): GMACs against params
    (millions) and against activation memory (MiB)."""
    plt = _plt()
    ok = frame[(frame["status"] == "ok") & (frame["macs"].astype(float) > 0)].copy()
    for col in ("macs", "params", "activation_bytes"):
        ok[col] = ok[col].astype(float)
    counts = ok["family"].fillna("").value_counts()
    top = list(counts.index[:TOP_FAMILIES])
    cmap = plt.get_cmap("tab20")
    colors = {f: cmap(i % 20) for i, f in enumerate(top)}
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.2), dpi=110, layout="constrained")
    panels = [("params", 1e6, "parameters (millions)"),
              ("activation_bytes", 2 ** 20, "activation memory per forward (MiB, every leaf output kept)")]
    for ax, (col, scale, label) in zip(axes, panels):
        rest = ok[~ok["family"].isin(top)]
        ax.scatter(rest[col] / scale, rest["macs"] / 1e9, s=9, color="0.7", alpha=0.6, linewidths=0,
                   label=f"other ({rest['family'].nunique()} families, {len(rest)} models)")
        for fam in top:
            g = ok[ok["family"] == fam]
            ax.scatter(g[col] / scale, g["macs"] / 1e9, s=12, color=colors[fam], alpha=0.85, linewidths=0,
                       label=f"{fam} ({len(g)})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax.xaxis)
        _plain_log_ticks(ax.yaxis)
        ax.set_xlabel(label + ", log scale")
        ax.set_ylabel("GMACs per forward (1 MAC = one fused multiply-add), log scale")
        ax.grid(True, which="both", alpha=0.25)
    axes[1].legend(fontsize=7, title="family (models)", title_fontsize=7.5, loc="upper left", markerscale=1.5)
    failed = len(frame) - len(ok)
    fig.suptitle(f"{title}: {len(ok)} of {len(frame)} models counted"
                 + (f" ({failed} without a count: see the status column)" if failed else ""), fontsize=10)
    _save(fig, target)


def zoo_summary(frame, added, skipped: int, seconds: float, jobs: int, shown: int = 20) -> str:
    """The text a zoo run prints: statuses, this run's time per model, the failures."""
    from .units import si

    counts = frame["status"].value_counts()
    lines = [f"{len(frame)} models: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    if added:
        per = sum(float(r.get("seconds") or 0) for r in added) / len(added)
        lines.append(f"this run: {len(added)} models in {seconds / 60:.1f} min with {jobs} worker(s), "
                     f"{per:.1f} s per model in its worker" + (f"; {skipped} already done" if skipped else ""))
    elif skipped:
        lines.append(f"this run: nothing to do, all {skipped} models already done under these conditions")
    ok = frame[frame["status"] == "ok"]
    if len(ok):
        big = ok.loc[ok["macs"].astype(float).idxmax()]
        lines.append(f"largest count: {big['model']}, {si(float(big['macs']))} MACs, {si(float(big['params']))} params")
    bad = frame[frame["status"] != "ok"]
    for r in bad.head(shown).itertuples():
        lines.append(f"  {r.model}: {r.status}: {r.reason}")
    if len(bad) > shown:
        lines.append(f"  ... and {len(bad) - shown} more (the CSV's status and reason columns)")
    return "\n".join(lines)
