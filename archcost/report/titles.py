"""Titles that fit: a figure's title wraps to the figure's width, an axes' title to its
axes' width, measured as drawn. A title is made of conditions (a CPU's full model name, a
device's, a list of models that ran out of memory), so its length is not known when the
figure is laid out: matplotlib clips what runs past the figure's edge without a word."""

import textwrap

PAD_PX = 4  # kept clear of the figure's edge
ROUNDS = 4  # wrap, lay out again, measure again: the layout moves the axes a little


def _titles(fig):
    """(text, the width it may take in pixels) for the figure's title and each axes' titles.
    ``_suptitle`` and the three title slots of an Axes are matplotlib's own attributes: the
    public getters return strings, and the Text is what is measured."""
    out = []
    sup = getattr(fig, "_suptitle", None)
    if sup is not None and sup.get_text():
        out.append((sup, fig.bbox.width - 2 * PAD_PX))
    for ax in fig.axes:
        for t in (ax.title, getattr(ax, "_left_title", None), getattr(ax, "_right_title", None)):
            if t is not None and t.get_text():
                out.append((t, min(ax.bbox.width, fig.bbox.width - 2 * PAD_PX)))
    return out


def fit_titles(fig, relayout=None) -> None:
    """Wrap every title wider than its room at word boundaries, keeping its own line
    breaks; ``relayout`` (e.g. ``fig.tight_layout``) runs after each change, for a figure
    without a layout engine."""
    for _ in range(ROUNDS):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        changed = False
        for text, room in _titles(fig):
            width = text.get_window_extent(renderer).width
            if width <= room:
                continue
            lines = text.get_text().split("\n")
            chars = max(12, int(max(len(s) for s in lines) * room / width * 0.97))
            text.set_text("\n".join(textwrap.fill(s, chars) or s for s in lines))
            changed = True
        if not changed:
            return
        if relayout is not None:
            relayout()
