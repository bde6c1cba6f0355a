"""Before / after figures of a what-if intervention (:mod:`apinet.explain.whatif`); no model calls."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..explain.whatif import HalfGates, Occlude, SetGate, SwapGates, WhatIfResult, cell_bounds, effective_interventions
from .figures import FIGURE_WIDTHS, MIN_FONT_SIZE, background_rc, parse_width

__all__ = ["baseline_colour", "describe_intervention", "occluded_image", "whatif_figure"]

_A, _B = "#1f6feb", "#e8590c"  # the app's A / B colours


def baseline_colour(expl) -> tuple[int, int, int]:
    """The display colour of an occluded pixel: the normalisation mean of the explanation's preprocessing."""
    mean = ((getattr(expl, "settings", None) or {}).get("preprocess") or {}).get("mean") or (0.5, 0.5, 0.5)
    return tuple(int(round(255 * float(m))) for m in mean[:3])  # type: ignore[return-value]


def occluded_image(image: np.ndarray, mask: np.ndarray | None, colour=(128, 128, 128)) -> np.ndarray:
    """``image [H, W, 3]`` uint8 with the cells of ``mask [rows, cols]`` filled with ``colour``, as the
    model saw it (the same pixel bounds as :func:`apinet.explain.whatif.occlude_cells`)."""
    out = np.array(image, copy=True)
    if mask is None:
        return out
    mask = np.asarray(mask, dtype=bool)
    h, w = out.shape[:2]
    for r, c in zip(*np.nonzero(mask)):
        r0, r1 = cell_bounds(h, mask.shape[0], int(r))
        c0, c1 = cell_bounds(w, mask.shape[1], int(c))
        out[r0:r1, c0:c1] = colour
    return out


def describe_intervention(item) -> str:
    """One line of plain English for an intervention (A = image 1, B = image 2)."""
    if isinstance(item, HalfGates):
        return "every gate set to 0.5 (no attention)"
    if isinstance(item, SwapGates):
        return "gates swapped (A gets g₂, B gets g₁)"
    if isinstance(item, SetGate):
        return f"{'A' if item.image == 1 else 'B'}'s gate of channel {item.channel} set to {item.value:g}"
    if isinstance(item, Occlude):
        n, tag = len(item.cells), "A" if item.image == 1 else "B"
        if n == 0:
            return f"every cell of {tag} shown again"
        return f"{n} of {item.grid[0] * item.grid[1]} cells of {tag} hidden (filled with the normalisation mean)"
    raise TypeError(f"not a what-if intervention: {item!r}")


def _plain(text: str) -> str:
    return text.replace("$", r"\$")


def _bars(ax, labels, before, after, colours, font_size: float, title: str) -> None:
    xs = np.arange(len(labels))
    ax.bar(xs - 0.2, before, 0.4, color="#9aa4b1", label="before")
    ax.bar(xs + 0.2, after, 0.4, color=colours, label="after")
    for x, v in zip(np.concatenate([xs - 0.2, xs + 0.2]), list(before) + list(after)):
        ax.annotate(f"{v:+.3g}", (x, v), xytext=(0, 2 if v >= 0 else -2), textcoords="offset points",
                    ha="center", va="bottom" if v >= 0 else "top", fontsize=font_size - 1)
    ax.set_xticks(xs, labels, fontsize=font_size)
    ax.tick_params(labelsize=font_size)
    ax.axhline(0, color="#555555", linewidth=0.6)
    low, high = min(0.0, *before, *after), max(0.0, *before, *after)
    pad = 0.18 * (high - low or 1.0)
    ax.set_ylim(low - pad, high + pad)
    ax.set_title(title, fontsize=font_size)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def whatif_figure(expl, result: WhatIfResult, *, width: str | float = "double", font_size: float = 7.0,
                  dpi: int = 150, background: str = "white") -> Any:
    """Images before / after (occluded cells filled as the model saw them); each image's
    logit_self - logit_other before / after (where the gates' effect shows); the change of the four
    target-class logits; and a line per image with p_self - p_other and the ranking-loss term.
    ``background``: white, transparent or dark (light text), as the other figures
    (:data:`apinet.render.figures.BACKGROUNDS`)."""
    import matplotlib
    from matplotlib import rc_context

    matplotlib.use("Agg", force=False)
    if font_size < MIN_FONT_SIZE:
        raise ValueError(f"font_size must be at least {MIN_FONT_SIZE} pt, got {font_size}")
    with rc_context(background_rc(background)):
        return _whatif_figure(expl, result, width, font_size, dpi)


def _whatif_figure(expl, result: WhatIfResult, width: str | float, font_size: float, dpi: int) -> Any:
    import textwrap

    from matplotlib.figure import Figure

    inches = parse_width(width)
    small = inches < FIGURE_WIDTHS["double"] - 1e-6
    fig = Figure(figsize=(inches, inches * (1.8 if small else 0.78)), dpi=dpi)
    colour = baseline_colour(expl)
    images = [expl.image1, occluded_image(expl.image1, result.occluded[0], colour),
              expl.image2, occluded_image(expl.image2, result.occluded[1], colour)]
    titles = ["A before", "A after", "B before", "B after"]
    if small:
        grid = fig.add_gridspec(4, 4, height_ratios=[1, 1.5, 1.5, 1.5], hspace=0.75, wspace=0.08)
        bar_axes = [fig.add_subplot(grid[1, :]), fig.add_subplot(grid[2, :])]
        text_ax = fig.add_subplot(grid[3, :])
    else:
        grid = fig.add_gridspec(3, 4, height_ratios=[1, 1.25, 0.45], hspace=0.55, wspace=0.25)
        bar_axes = [fig.add_subplot(grid[1, 0:2]), fig.add_subplot(grid[1, 2:4])]
        text_ax = fig.add_subplot(grid[2, :])
    for i, (image, title) in enumerate(zip(images, titles)):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(image)
        ax.set_title(title, fontsize=font_size, color=_A if i < 2 else _B)
        ax.set_xticks([])
        ax.set_yticks([])
    b, a = result.before, result.after
    _bars(bar_axes[0], ["A", "B"], [b.logit_gap(1), b.logit_gap(2)], [a.logit_gap(1), a.logit_gap(2)], [_A, _B],
          font_size, "logit_self − logit_other (target class)")
    bar_axes[0].legend(fontsize=font_size, frameon=False, loc="upper left")
    keys = [(1, "self"), (1, "other"), (2, "self"), (2, "other")]
    changes = [a.logit(i, p) - b.logit(i, p) for i, p in keys]
    ax = bar_axes[1]
    xs = np.arange(4)
    ax.bar(xs, changes, 0.55, color=[_A, _A, _B, _B])
    for x, v in zip(xs, changes):
        ax.annotate(f"{v:+.3g}", (x, v), xytext=(0, 2 if v >= 0 else -2), textcoords="offset points",
                    ha="center", va="bottom" if v >= 0 else "top", fontsize=font_size - 1)
    ax.set_xticks(xs, ["A self", "A other", "B self", "B other"], fontsize=font_size)
    ax.tick_params(labelsize=font_size)
    ax.axhline(0, color="#555555", linewidth=0.6)
    low, high = min(0.0, *changes), max(0.0, *changes)
    pad = 0.18 * (high - low or 1.0)
    ax.set_ylim(low - pad, high + pad)
    ax.set_title("change of each target-class logit (after − before)", fontsize=font_size)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    applied = effective_interventions(result.interventions)
    lines = ["Change: " + ("; ".join(describe_intervention(i) for i in applied) or "none")]
    for tag, i in (("A", 1), ("B", 2)):
        lines.append(f"{tag}: p_self − p_other {b.score_gap(i):+.3g} → {a.score_gap(i):+.3g}; ranking-loss term "
                     f"{b.rank_term(i):.3g} → {a.rank_term(i):.3g} (margin {'met' if a.margin_met(i) else 'not met'})")
    left, right = (0.15, 0.97) if small else (0.07, 0.99)
    chars = max(30, int((right - left) * inches * 72 / (0.58 * font_size)))  # about 0.55 em per character
    text_ax.axis("off")
    text_ax.text(0.0, 1.0, "\n".join(textwrap.fill(_plain(line), chars) for line in lines), fontsize=font_size,
                 va="top", ha="left", transform=text_ax.transAxes)
    fig.subplots_adjust(left=left, right=right, top=0.95, bottom=0.02)
    return fig
