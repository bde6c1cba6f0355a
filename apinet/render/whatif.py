"""Before / after figures of a what-if intervention (:mod:`apinet.explain.whatif`); no model calls."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..explain.whatif import HalfGates, Occlude, SetGate, SwapGates, WhatIfResult, cell_bounds
from .figures import FIGURE_WIDTHS, MIN_FONT_SIZE, parse_width

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


def whatif_figure(expl, result: WhatIfResult, *, width: str | float = "double", font_size: float = 7.0,
                  dpi: int = 150) -> Any:
    """Images before / after (occluded cells filled as the model saw them) and the four target-class
    logits before / after, with p_self - p_other and the ranking-loss term of each image."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    if font_size < MIN_FONT_SIZE:
        raise ValueError(f"font_size must be at least {MIN_FONT_SIZE} pt, got {font_size}")
    inches = parse_width(width)
    small = inches < FIGURE_WIDTHS["double"] - 1e-6
    fig = Figure(figsize=(inches, inches * (1.25 if small else 0.62)), dpi=dpi)
    colour = baseline_colour(expl)
    images = [expl.image1, occluded_image(expl.image1, result.occluded[0], colour),
              expl.image2, occluded_image(expl.image2, result.occluded[1], colour)]
    titles = ["A before", "A after", "B before", "B after"]
    grid = fig.add_gridspec(2 if small else 1, 4 if small else 6, height_ratios=[1, 1.25] if small else None,
                            width_ratios=None if small else [1, 1, 1, 1, 0.25, 3.2])
    for i, (image, title) in enumerate(zip(images, titles)):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(image)
        ax.set_title(title, fontsize=font_size, color=_A if i < 2 else _B)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = fig.add_subplot(grid[1, :] if small else grid[0, 5])
    b, a = result.before, result.after
    labels = ["A self", "A other", "B self", "B other"]
    keys = [(1, "self"), (1, "other"), (2, "self"), (2, "other")]
    before = [b.logit(i, p) for i, p in keys]
    after = [a.logit(i, p) for i, p in keys]
    xs = np.arange(4)
    ax.bar(xs - 0.2, before, 0.4, color="#9aa4b1", label="before")
    ax.bar(xs + 0.2, after, 0.4, color=[_A, _A, _B, _B], label="after")
    ax.set_xticks(xs, labels, fontsize=font_size)
    ax.tick_params(labelsize=font_size)
    ax.set_ylabel("target-class logit", fontsize=font_size)
    ax.axhline(0, color="#555555", linewidth=0.5)
    ax.legend(fontsize=font_size, frameon=False, loc="best")
    lines = [f"{'; '.join(describe_intervention(i) for i in result.interventions) or 'no change'}"]
    for tag, i in (("A", 1), ("B", 2)):
        lines.append(f"{tag}: logit gap {b.logit_gap(i):+.3g} → {a.logit_gap(i):+.3g}; "
                     f"p_self − p_other {b.score_gap(i):+.3g} → {a.score_gap(i):+.3g}; "
                     f"loss term {b.rank_term(i):.3g} → {a.rank_term(i):.3g}")
    import textwrap

    text = "\n".join(textwrap.fill(_plain(line), 95 if not small else 60) for line in lines)
    fig.text(0.01, 0.01, text, fontsize=font_size, va="bottom", ha="left")
    fig.subplots_adjust(left=0.04 if not small else 0.12, right=0.99, top=0.9, bottom=0.3 if not small else 0.2,
                        wspace=0.08, hspace=0.35)
    return fig
