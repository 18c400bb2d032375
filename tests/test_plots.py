"""Figures: labels never overlap, bubbles stay inside the axes on one absolute scale,
every layer of ResNet-50 is named, and the lineage figure marks accuracy protocols."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from matplotlib.text import Text  # noqa: E402

from archcost.cli import main  # noqa: E402
from archcost.report import bubbles  # noqa: E402


def _crowded_axes():
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    # Six points, four of them nearly on top of each other (vgg16/vgg19/se_resnet50 style).
    xs = [10.0, 10.5, 11.0, 10.2, 2.0, 50.0]
    ys = [60.0, 62.0, 58.0, 61.0, 5.0, 200.0]
    ps = [138e6, 144e6, 28e6, 25e6, 3e6, 60e6]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.scatter(xs, ys, s=[bubbles.area(p) for p in ps])
    return fig, ax, xs, ys, ps


def test_bubbles_fit_inside_the_axes():
    fig, ax, xs, ys, ps = _crowded_axes()
    bubbles.fit_limits(ax, xs, ys, ps, pad_pt=0)
    fig.canvas.draw()
    frame = ax.get_window_extent()
    for x, y, p in zip(xs, ys, ps):
        cx, cy = ax.transData.transform((x, y))
        r = bubbles.radius_pt(p) * fig.dpi / 72
        assert frame.x0 <= cx - r + 1 and cx + r - 1 <= frame.x1
        assert frame.y0 <= cy - r + 1 and cy + r - 1 <= frame.y1
    plt.close(fig)


def test_labels_do_not_overlap_each_other():
    fig, ax, xs, ys, ps = _crowded_axes()
    bubbles.fit_limits(ax, xs, ys, ps, pad_pt=10)
    bubbles.place_labels(ax, xs, ys, [f"model number {i}" for i in range(len(xs))], ps)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    # The label's own text box (an Annotation's extent would include its leader line).
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]
    assert len(boxes) == len(xs)
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (ax.texts[i].get_text(), ax.texts[j].get_text())
    plt.close(fig)


def test_bubble_area_is_absolute():
    # The disc's area in pt^2 is params / PARAMS_PER_PT2 whatever else is on the plot;
    # matplotlib's s is the square of the diameter, 4/pi of the disc's area.
    assert math.isclose(bubbles.area(138_357_544), 138_357_544 / bubbles.PARAMS_PER_PT2 * 4 / math.pi)
    assert math.isclose(math.pi * bubbles.radius_pt(25_557_032) ** 2, 25_557_032 / bubbles.PARAMS_PER_PT2)


def test_resnet50_layer_plot_names_every_layer(tmp_path, monkeypatch):
    import archcost
    from archcost.report import plots

    a = archcost.analyze("resnet50", memory=False)
    seen = {}
    real_save = plots._save

    def keep(fig, target):
        seen["labels"] = [t.get_text() for t in fig.axes[-1].get_xticklabels()]
        real_save(fig, target)

    monkeypatch.setattr(plots, "_save", keep)
    plots.layer_breakdown(a.breakdown(), "resnet50", tmp_path / "r.png")
    rows = a.breakdown()
    rows = rows[~rows["aliased"].astype(bool)]
    rows = rows[(rows["params"] > 0) | (rows["macs"] > 0) | (rows["activation_bytes"] > 0)]
    assert seen["labels"] == list(rows["layer"])  # 53 convs, 53 BNs, pools and fc: all named


def test_plot_lineage_marks_protocols(tmp_path):
    r = CliRunner().invoke(main, ["plot", "lineage", "alexnet*", "lenet5", "resnet18", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.stderr
    for f in ("accuracy_vs_macs.png", "accuracy_vs_train_bytes.png"):
        assert (tmp_path / f).stat().st_size > 0
    frame = pd.read_csv(tmp_path / "lineage.csv").set_index("model")
    # The same network measured two ways: torchvision's weights vs the paper's ILSVRC-2010 test.
    assert frame.loc["alexnet", "protocol"] == "torchvision weights, ImageNet-1k val"
    assert frame.loc["alexnet_paper", "protocol"] == "paper, ILSVRC-2010 test"
    assert frame.loc["alexnet", "macs"] == frame.loc["alexnet", "macs"] // 1  # integer MACs
    r = CliRunner().invoke(main, ["plot", "lineage", "nosuch"])
    assert r.exit_code == 2


def test_plot_sweep_from_csv(tmp_path):
    rows = [{"model": m, "batch_size": b, "params": 1, "peak_bytes": 2**20 * b, "train_bytes": 2**21 * b,
             "latency_ms": 2.0 * b, "latency_p20_ms": 1.5 * b, "latency_p80_ms": 2.5 * b, "images_per_s": 500.0,
             "device_name": "cpu", "dtype": "float32"} for m in ("a", "b") for b in (1, 2, 4)]
    csv = tmp_path / "sweep.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    r = CliRunner().invoke(main, ["plot", "sweep", str(csv)])
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "sweep.png").stat().st_size > 0
    pd.DataFrame([{"x": 1}]).to_csv(csv, index=False)
    r = CliRunner().invoke(main, ["plot", "sweep", str(csv)])
    assert r.exit_code == 2 and "not a sweep CSV" in r.stderr


def _titles_inside(figs):
    """Every figure's title and axes titles lie inside the figure as saved."""
    from archcost.report.titles import _titles

    assert figs
    for fig in figs:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        for text, _ in _titles(fig):
            e = text.get_window_extent(renderer)
            assert box.x0 - 0.5 <= e.x0 and e.x1 <= box.x1 + 0.5 and box.y0 - 0.5 <= e.y0 and e.y1 <= box.y1 + 0.5, \
                (text.get_text(), e, box)


def _keep_figures(monkeypatch):
    figs = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig) if fig is not None else real_close())
    return figs


def test_sweep_title_inside_the_figure(tmp_path, monkeypatch):
    # A CPU's full model name and batches out of memory make the sweep's title longer than
    # one panel (--no-latency) or three: it wraps, never runs past the figure's edge.
    from archcost.report import plots
    from archcost.report.notes import sweep_title

    figs = _keep_figures(monkeypatch)
    rows = [{"model": m, "batch_size": b, "peak_bytes": 2.0**20 * b, "train_bytes": 2.0**21 * b, "latency_ms": 2.0 * b,
             "latency_p20_ms": 1.9 * b, "latency_p80_ms": 2.1 * b, "images_per_s": 500.0,
             "device_name": "Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz (2 logical cores)", "dtype": "float32"}
            for m in ("alexnet", "googlenet", "resnet50") for b in (1, 2, 4, 8, 16)]
    frame = pd.DataFrame(rows)
    plots.sweep(frame, tmp_path / "one.png", sweep_title(frame), latency=False)
    oom = pd.concat([frame, pd.DataFrame([{"model": m, "batch_size": 32} for m in ("alexnet", "googlenet", "resnet50")])],
                    ignore_index=True)
    plots.sweep(oom, tmp_path / "three.png", sweep_title(frame), latency=True)
    _titles_inside(figs)


def test_fit_titles_inside_the_figure(tmp_path, monkeypatch):
    # `fit --memory t4`'s title names the device, the optimizer and the dtype: one model's
    # panel is narrower than that line.
    from archcost.report.plots_fit import fit_curves
    from archcost.report.plots_ledger import PARTS, ledger_parts

    figs = _keep_figures(monkeypatch)
    curve = pd.DataFrame([{"model": "resnet18", "batch_size": b, "needed_bytes": 2**24 * b,
                           **{p: 2**22 * b for p in PARTS}} for b in (1, 2, 4, 8)])
    answers = pd.DataFrame([{"model": "resnet18", "batch": 4}])
    ledger_parts(curve, answers, 2**26, 2**26, tmp_path / "l.png",
                 "What fits on t4 (one training step, torch.optim sgd (foreach), float32): the device ledger, predicted")
    fit_curves(curve, answers, 2**26, tmp_path / "f.png",
               "What fits in 16GiB (one training step, torch.optim adam (foreach), float32, input 3x224x224, "
               "checkpointing layer1 layer2 layer3 layer4)")
    _titles_inside(figs)


def _annotation_boxes(ax, renderer):
    return [(t.get_text(), Text.get_window_extent(t, renderer)) for t in ax.texts if t.get_text()]


def test_plan_chart_labels_clear_of_each_other_the_budget_line_and_the_frame(tmp_path, monkeypatch):
    # The committed plan of ResNet-50 in 2 GiB: the plan's point (1.97 GiB) sits just under
    # the budget line; the largest point is near the top of the axes.
    from archcost.report.plots_plan import plan_chart

    figs = _keep_figures(monkeypatch)
    gib = 2**30
    rows = [{"checkpoint": "plan", "needed_bytes": 2113730352, "recompute_macs": 22080651264},
            {"checkpoint": "none", "needed_bytes": 3089965872, "recompute_macs": 0},
            {"checkpoint": "blocks", "needed_bytes": 1447655216, "recompute_macs": 128661700608},
            {"checkpoint": "sqrt-n", "needed_bytes": 1943348016, "recompute_macs": 128661700608}]
    plan_chart(rows, 2 * gib, "resnet50, batch 32, adam: checkpoint sets, measured", tmp_path / "p.png")
    (fig,) = figs
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    frame = ax.get_window_extent()
    line_y = ax.transData.transform((0, 2.0))[1]
    boxes = _annotation_boxes(ax, renderer)
    assert len(boxes) >= len(rows)
    for i, (text, b) in enumerate(boxes):
        assert frame.x0 < b.x0 and b.x1 < frame.x1 and frame.y0 < b.y0 and b.y1 < frame.y1, text
        assert not (b.y0 - 1 <= line_y <= b.y1 + 1), (text, "on the budget line")
        assert not b.overlaps(ax.get_legend().get_window_extent(renderer)), (text, "under the legend")
        for other, c in boxes[i + 1:]:
            assert not b.overlaps(c), (text, other)


def _points_under_legends(fig):
    """Data points (line vertices, scatter offsets) drawn under any legend of ``fig``."""
    import numpy as np

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    hits = []
    for ax in fig.axes:
        legends = [c for c in ax.get_children() if isinstance(c, matplotlib.legend.Legend)]
        pts = [ax.transData.transform(np.column_stack(l.get_data())) for l in ax.get_lines() if len(l.get_xdata())]
        pts += [ax.transData.transform(c.get_offsets()) for c in ax.collections if len(c.get_offsets())]
        for leg in legends:
            box = leg.get_window_extent(renderer)
            for p in pts:
                inside = p[(p[:, 0] > box.x0) & (p[:, 0] < box.x1) & (p[:, 1] > box.y0) & (p[:, 1] < box.y1)]
                hits += [tuple(q) for q in inside]
    return hits


def test_decode_legends_cover_no_point(tmp_path, monkeypatch):
    # The committed decode sweep: GPT-2's prefill per token falls to the bottom left of the
    # bytes panel, where its legend was.
    import matplotlib.legend  # noqa: F401

    from archcost.report.plots_decode import decode_sweep

    figs = _keep_figures(monkeypatch)
    frame = pd.read_csv("reports/decode_h100-sxm_bfloat16_b1_n128-8192_hf_gpt2-hf_llama-hf_mistral.csv")
    decode_sweep(frame.dropna(subset=["macs"]), tmp_path / "d.png", "decode")
    assert _points_under_legends(figs[0]) == []


def test_sqrt_n_chart_legend_covers_no_point_and_labels_show(tmp_path, monkeypatch):
    # reproduce sqrt-n-checkpointing: eleven legend entries found no free corner (one covered
    # the 35-block ResNet's point); the label of the dashed line at one forward was placed
    # off the axes (at a linear x limit, before the axis turned log) and never drawn.
    import matplotlib.legend  # noqa: F401

    from archcost.report.plots_plan import checkpointing_depth

    figs = _keep_figures(monkeypatch)
    f = pd.read_csv("reports/reproductions.csv")
    checkpointing_depth(f[f["experiment"] == "sqrt-n-checkpointing"].to_dict("records"), tmp_path / "s.png")
    (fig,) = figs
    assert _points_under_legends(fig) == []
    renderer = fig.canvas.get_renderer()
    shown = []
    for ax in fig.axes:
        frame = ax.get_window_extent()
        for t in ax.texts:
            b = Text.get_window_extent(t, renderer)
            if t.get_visible() and (not hasattr(t, "get_annotation_clip") or t._check_xy(renderer)):
                shown.append(t.get_text())
                assert frame.x0 < b.x0 and b.x1 < frame.x1 and frame.y0 < b.y0 and b.y1 < frame.y1, t.get_text()
    assert "one extra forward" in shown
    # and no name sits on a line
    from archcost.report.bubbles import line_boxes

    left = fig.axes[0]
    lines = line_boxes(left)
    for t in left.texts:
        b = Text.get_window_extent(t, renderer)
        assert not any(b.overlaps(c) for c in lines), t.get_text()


def test_reproduce_roofline_draws_each_groups_own_ridge(tmp_path, monkeypatch):
    # On an A100, VGG16's FC layers run at FP32 (ridge 9.56 FLOP/byte) and its convolutions
    # as TF32 (76.5): one line at the convolutions' ridge said the FC layers turn
    # compute-bound near batch 170, where the table says batch 20.
    from archcost.report.plots_roofline import batch_experiment

    figs = _keep_figures(monkeypatch)
    f = pd.read_csv("reports/reproductions.csv")
    rows = f[f["experiment"] == "roofline"].to_dict("records")
    batch_experiment(rows, tmp_path / "r.png")
    left = figs[0].axes[0]
    drawn = {round(line.get_ydata()[0], 6) for line in left.get_lines() if line.get_linestyle() == ":"}
    wanted = {round(float(r["ridge_flop_per_byte"]), 6) for r in rows if r["variant"].startswith("VGG16")}
    assert len(wanted) == 2 and drawn == wanted
    texts = " ".join(t.get_text() for t in left.texts)
    assert "FC layers: 9.56 FLOP/byte" in texts


def test_sweep_legends_cover_no_point(tmp_path, monkeypatch):
    # The committed sweep: the line-style legend at the lower right covered AlexNet's
    # inference peaks (a few MiB at batch 4 to 16).
    import matplotlib.legend  # noqa: F401

    from archcost.report import plots

    figs = _keep_figures(monkeypatch)
    frame = pd.read_csv("reports/sweep_cpu_float32_b1-16_alexnet-googlenet-resnet50.csv")
    plots.sweep(frame, tmp_path / "s.png", "t")
    assert _points_under_legends(figs[0]) == []
    from archcost.report.bubbles import line_boxes

    ax = figs[0].axes[0]
    renderer = figs[0].canvas.get_renderer()
    legends = [c for c in ax.get_children() if isinstance(c, matplotlib.legend.Legend)]
    lines = [b for b in line_boxes(ax)]
    for leg in legends:
        box = leg.get_window_extent(renderer)
        assert not any(box.overlaps(b) for b in lines), [t.get_text() for t in leg.get_texts()]
