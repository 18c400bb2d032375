"""``archcost plan``'s output: rows of raw integers (CSV, JSON) and the text view."""

from __future__ import annotations

from typing import List

from .units import human_bytes, si

PLAN_COLUMNS = ["model", "batch", "checkpoint", "segments", "needed_bytes", "train_peak_bytes", "peak_phase",
                "fits", "headroom_bytes", "recompute_macs", "recompute_share", "modules"]
NAMES = {"plan": "plan", "none": "no checkpointing", "blocks": "every block", "sqrt-n": "sqrt(n) segments"}


def _segment_text(seg) -> str:
    return seg[0] if len(seg) == 1 else f"{seg[0]}..{seg[-1].rpartition('.')[2]}"


def plan_rows(result, optimizer_note: bool = False) -> List[dict]:
    """One row per measured set: the plan first, then the references."""
    rows = []
    for label, e in [("plan", result.plan), *result.references.items()]:
        if e is None:
            continue
        rows.append({"model": result.model, "batch": result.batch, "checkpoint": label,
                     "segments": len(e.segments), "needed_bytes": e.needed_bytes,
                     "train_peak_bytes": e.train_peak_bytes, "peak_phase": e.peak_phase, "fits": e.fits,
                     "headroom_bytes": result.budget_bytes - e.needed_bytes, "recompute_macs": e.recompute_macs,
                     "recompute_share": result.share(e), "modules": " ".join(_segment_text(s) for s in e.segments)})
    return rows


def plan_json(result, patterns, code) -> dict:
    return {"model": result.model, "batch": result.batch, "budget_bytes": result.budget_bytes,
            "optimizer": result.optimizer, "fits": result.plan is not None,
            "forward_macs": result.forward_macs, "step_macs": result.step_macs,
            "measured_sets": result.measured_sets, "search_complete": result.search_complete,
            "rows": plan_rows(result), "checkpoint_patterns": list(patterns), "snippet": code,
            "notes": list(result.notes)}


def _line(name, e, result) -> str:
    fits = "fits" if e.fits else "over"
    return (f"  {NAMES.get(name, name):<18} {len(e.segments):>4} segments  needs {human_bytes(e.needed_bytes):>11} "
            f"({fits}, peak in {e.peak_phase})  recompute {si(e.recompute_macs):>6} MACs "
            f"= {result.share(e):.1%} of the step")


def plan_text(result, patterns, code, budget_text: str) -> str:
    """The plan in words: the four measured sets, the plan's modules, its --checkpoint
    patterns and the Python that applies it."""
    out = [f"{result.model} at batch {result.batch}, {result.optimizer}: budget {budget_text} "
           f"= {result.budget_bytes:,} bytes; needed = training-step peak + input batch, each measured.",
           f"Step without checkpointing: {si(result.step_macs)} MACs (forward {si(result.forward_macs)}).", ""]
    if result.plan is not None:
        out.append(_line("plan", result.plan, result))
    for name, e in result.references.items():
        if e is not None:
            out.append(_line(name, e, result))
    out.append("")
    if result.plan is None:
        out.append(f"No plan fits: {result.measured_sets} checkpoint sets measured, the least needed "
                   f"{human_bytes(result.best_needed_bytes)}.")
    elif not result.plan.segments:
        out.append("It fits without checkpointing.")
    else:
        mods = [s[0] for s in result.plan.segments]
        n = result.measured_sets
        out += [f"Plan: checkpoint {len(mods)} modules ({n} set{'' if n == 1 else 's'} measured"
                + ("" if result.search_complete else "; search cut short, the least recompute not proven") + "):",
                "  " + " ".join(mods), "",
                "As options for `archcost table --train` / `archcost fit`:",
                "  " + " ".join(f"--checkpoint '{p}'" for p in patterns), "",
                "In Python (model: your nn.Module):", ""] + [("    " + ln).rstrip() for ln in code.rstrip().splitlines()]
    out += [f"note: {n}" for n in result.notes]
    return "\n".join(out)
