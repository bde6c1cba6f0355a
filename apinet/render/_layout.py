"""Page layout of the figures: panels wrapped into rows that fit a given width, horizontal colour bars
under the panels they describe, letters beside (never on) the titles, bar charts with legends outside
the data. Everything is sized in inches from the font size, so every text fits at the chosen width.

A figure is a stack of *blocks* (matplotlib sub-figures), each two image rows high (image 1 above
image 2); a *section* (one channel set, one pair of a multi-pair figure) fills one or more blocks.
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .overlays import colormap_lut
from .panels import EXACT_UNITS, LTPA_UNITS, Panel

if TYPE_CHECKING:  # pragma: no cover
    from ..explain import PairExplanation
    from .figures import FigureSettings

MIN_SIDE = 0.62  # inches: the smallest image panel before a row wraps
COLUMN_GAP = 0.16  # inches per column: the panel letter and the space between panels
EDGE = 0.12  # inches: the figure's outer margins together
BAR_THICKNESS = 0.07  # inches: a horizontal colour bar


def line_height(settings: FigureSettings) -> float:
    return settings.font_size * 1.25 / 72


_NBSP = "\u00a0"


def _keep_together(text: str) -> str:
    """Non-breaking spaces inside "(g1 0.62)", "channel 637" and "493 / 1227" (textwrap only breaks
    at ASCII whitespace)."""
    text = re.sub(r"\([^()]*\)", lambda m: m.group(0).replace(" ", _NBSP), text)
    text = re.sub(r"\b(channels?|image|[AB]) (\d+)", rf"\1{_NBSP}\2", text)
    return re.sub(r"(\d) / (\d)", rf"\1{_NBSP}/{_NBSP}\2", text)


def _split_group(group: str, chars: int) -> list[str]:
    """A kept-together group too wide for a line, split at its non-breaking spaces only (greedily):
    a number or a word is never cut ("889" never becomes "88" / "9")."""
    out: list[str] = []
    for piece in group.split(_NBSP):
        if out and len(out[-1]) + 1 + len(piece) <= chars:
            out[-1] += _NBSP + piece
        else:
            out.append(piece)
    return out


def _split_word(word: str, chars: int) -> list[str]:
    """A single word wider than a line: split after its hyphens ("Double-" "barred"), else kept whole
    (it may overhang its panel a little rather than read as two words)."""
    if "-" not in word.strip("-"):
        return [word]
    parts = re.findall(r"[^-]*-|[^-]+$", word)
    out: list[str] = []
    for part in parts:
        if out and len(out[-1]) + len(part) <= chars:
            out[-1] += part
        else:
            out.append(part)
    return out


def wrap(text: str, inches: float, settings: FigureSettings) -> str:
    """``text`` broken into lines that fit ``inches`` at the figure's font size (0.6 em per character:
    DejaVu Sans averages about 0.55). Lines break only at spaces (and after hyphens of a word too long
    for a line), never inside a number or a word."""
    chars = max(4, int(inches * 72 / (0.6 * settings.font_size)))
    lines: list[str] = []
    for part in str(text).split("\n"):
        words: list[str] = []
        for group in _keep_together(part).split(" "):
            if len(group) <= chars * 1.2:
                words.append(group)
                continue
            for piece in _split_group(group, chars):
                words.extend(_split_word(piece, chars) if len(piece) > chars * 1.2 else [piece])
        joined = " ".join(words)
        out: list[str] = []
        for word in joined.split(" "):  # greedy; a hyphen split above leaves no space, so re-join it
            if out and len(out[-1]) + 1 + len(word) <= chars:
                out[-1] += " " + word
            else:
                out.append(word)
        lines.extend(out or [""])
    return "\n".join(lines).replace(_NBSP, " ")


def n_lines(text: str | None) -> int:
    return 0 if not text else text.count("\n") + 1


def short_units(units: str) -> str:
    """The units under a colour bar (the long forms are in the panel metadata and the README)."""
    if units == LTPA_UNITS:
        return "× uniform attention"
    if units.endswith(" (raw)"):
        return "raw CAM"
    if units == EXACT_UNITS:
        return "logit per position"
    return units


def fmt_value(v: float, span: float) -> str:
    """``v`` to two significant digits of the bar's ``span`` (so 5.8e-07 on a 0..0.05 bar reads 0)."""
    if not np.isfinite(span) or span <= 0:
        span = abs(v) or 1.0
    if span < 1e-3 or span >= 1e5:
        return f"{v:.1e}"
    decimals = max(0, 1 - math.floor(math.log10(span)))
    text = f"{v:.{decimals}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text


# --------------------------------------------------------------------------------------------------
# Columns and blocks
# --------------------------------------------------------------------------------------------------


@dataclass
class Section:
    """The images of one pair followed by panels, under an optional heading."""

    expl: PairExplanation
    panels: list[Panel]
    heading: str | None = None
    letter: str | None = None  # one letter for the whole section (else one per column)
    titles: list[bool] = field(default_factory=list)  # per panel: draw its title


@dataclass
class Block:
    section: Section
    columns: list[Panel | None]  # None = the images column
    heading: str | None
    letters: list[str | None]
    titles: list[bool]
    bar_keys: set[tuple[str, bool]] | None = None  # scales whose bar this block draws (None: all of its own)

    def has_bars(self, settings: FigureSettings) -> bool:
        if not settings.colorbars or all(p is None for p in self.columns):
            return False
        return self.bar_keys is None or bool(self.bar_keys)


def plan_columns(n_columns: int, settings: FigureSettings) -> tuple[int, float]:
    """``(columns per row, panel side in inches)`` for a section of ``n_columns`` at the figure width."""
    width = settings.width_inches
    most = max(1, int((width - EDGE) // (MIN_SIDE + COLUMN_GAP)))
    rows = math.ceil(n_columns / most)
    cols = math.ceil(n_columns / rows)
    side = min((width - EDGE) / cols - COLUMN_GAP, settings.panel_inches)
    return cols, side


def share_bars(blocks: list[Block]) -> None:
    """Scope ``models``: one bar per scale, under the last block that shows maps of that scale."""
    seen: set[tuple[str, bool]] = set()
    for block in reversed(blocks):
        keys = {(p.units, p.signed) for p in block.columns if p is not None}
        block.bar_keys = keys - seen
        seen |= keys


def blocks_of(sections: list[Section], cols: int, letter_per_column: bool) -> list[Block]:
    blocks: list[Block] = []
    letter = 0
    for s in sections:
        columns: list[Panel | None] = [None, *s.panels]
        titles = [True, *(s.titles or [True] * len(s.panels))]
        for start in range(0, len(columns), cols):
            chunk = columns[start:start + cols]
            letters: list[str | None] = []
            for j in range(len(chunk)):
                first = start == 0 and j == 0
                if letter_per_column or (first and s.letter is None):
                    letters.append(chr(ord("a") + letter))
                    letter += 1
                elif first:
                    letters.append(s.letter)
                else:
                    letters.append(None)
            heading = s.heading if start == 0 else None
            blocks.append(Block(s, chunk, heading, letters, titles[start:start + cols]))
    return blocks


# --------------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------------


def _image_axis(ax, image: np.ndarray) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _title(ax, text: str | None, settings: FigureSettings) -> None:
    if text and settings.titles:
        ax.set_title(text, fontsize=settings.font_size, pad=2, parse_math=False)


def letter(ax, text: str | None, settings: FigureSettings) -> None:
    """The panel letter left of the axes' top-left corner: outside the image and its title."""
    if text and settings.panel_letters:
        from matplotlib.transforms import offset_copy

        where = offset_copy(ax.transAxes, fig=ax.figure, x=-2, y=0, units="points")
        ax.text(0, 1, text, transform=where, fontsize=settings.font_size + 1, fontweight="bold",
                ha="right", va="top")


def _mpl_cmap(name: str):
    from matplotlib.colors import ListedColormap

    return ListedColormap(colormap_lut(name) / 255.0, name=f"lut_{name}")


def colour_bar(fig, cax, vrange: tuple[float, float], units: str, cmap: str, signed: bool,
               settings: FigureSettings, width_in: float) -> None:
    """A horizontal bar: its limits under its ends (inside its width), 0 under the centre of a signed
    bar, the units below."""
    from matplotlib.transforms import offset_copy

    lo, hi = vrange
    cax.imshow(np.linspace(0, 1, 256)[None, :], aspect="auto", cmap=_mpl_cmap(cmap), vmin=0, vmax=1,
               extent=(0, 1, 0, 1), interpolation="nearest")
    cax.set_xticks([])
    cax.set_yticks([])
    for spine in cax.spines.values():
        spine.set_linewidth(0.4)
    below = offset_copy(cax.transAxes, fig=fig, y=-1.5, units="points")
    size = settings.font_size
    low_text, high_text = fmt_value(lo, hi - lo), fmt_value(hi, hi - lo)
    bar_pt = cax.get_position().width * fig.figure.get_figwidth() * 72  # figure fraction of the root figure
    gap = 0.8 * size
    if signed and _text_pt(low_text + high_text + "0", size) + 2 * gap > bar_pt:
        # a narrow symmetric bar: one centred "-v ... 0 ... v" would overprint; "±v" says the same
        cax.text(0.5, 0, f"±{high_text}", transform=below, fontsize=size, ha="center", va="top")
    else:
        cax.text(0, 0, low_text, transform=below, fontsize=size, ha="left", va="top")
        cax.text(1, 0, high_text, transform=below, fontsize=size, ha="right", va="top")
        if signed:
            cax.text(0.5, 0, "0", transform=below, fontsize=size, ha="center", va="top")
    if units:
        cax.set_xlabel(wrap(short_units(units), width_in, settings), fontsize=size,
                       labelpad=size * 1.25 + 1.5)


def _text_pt(text: str, size: float) -> float:
    """A generous estimate of a short label's width in points (digits and signs are about 0.6 em)."""
    return 0.62 * size * len(text)


def _bar_groups(columns: list[Panel | None], which: int, scope: str) -> list[tuple[int, int, Panel]]:
    """Runs of columns sharing one colour bar: ``(first, last, panel)``; only ``models`` merges."""
    runs: list[tuple[int, int, Panel]] = []
    for j, p in enumerate(columns):
        if p is None:
            continue
        r = p.range1 if which == 1 else p.range2
        if runs and scope == "models":
            a, b, q = runs[-1]
            rq = q.range1 if which == 1 else q.range2
            if b == j - 1 and (q.units, q.signed, rq) == (p.units, p.signed, r):
                runs[-1] = (a, j, q)
                continue
        runs.append((j, j, p))
    return runs


def block_height(block: Block, side: float, settings: FigureSettings) -> float:
    lh = line_height(settings)
    expl = block.section.expl
    top = max((n_lines(wrap(p.label, side, settings)) if p is not None and t else 0)
              for p, t in zip(block.columns, block.titles))
    top = max(top, n_lines(wrap(image_title(expl, 1), side, settings)) if block.columns[0] is None else top)
    bottom = n_lines(wrap(image_title(expl, 2), side, settings)) if block.columns[0] is None else 0
    h = 2 * side + top * lh + 0.16
    if block.heading:
        h += n_lines(wrap(block.heading, len(block.columns) * side, settings)) * lh + 0.08
    below = bottom * lh + 0.04
    if block.has_bars(settings):
        units = max(n_lines(wrap(short_units(p.units), side, settings)) for p in block.columns if p is not None)
        one = BAR_THICKNESS + (1 + units) * lh + 0.1
        h += one if settings.scope == "map" else 0.0
        below = max(below, one)
    return h + below


def image_title(expl: PairExplanation, i: int) -> str:
    names = expl.class_names
    return f"{'AB'[i - 1]}: {names[expl.targets[i - 1]]}"


def draw_block(sf, block: Block, side: float, cols: int, settings: FigureSettings) -> None:
    """One block in sub-figure ``sf``: image rows, colour-bar rows, titles, letters, heading."""
    expl = block.section.expl
    per_map = settings.scope == "map"
    bars = block.has_bars(settings)
    rows = ["img1", "bar1", "img2", "bar2"] if (bars and per_map) else (["img1", "img2", "bar2"] if bars
                                                                        else ["img1", "img2"])
    if block.heading:
        rows.insert(0, "heading")
    ratios = [side if r.startswith("img") else (BAR_THICKNESS if r.startswith("bar") else 0.001) for r in rows]
    grid = sf.add_gridspec(len(rows), cols, height_ratios=ratios)
    r1, r2 = rows.index("img1"), rows.index("img2")
    for j, p in enumerate(block.columns):
        top = sf.add_subplot(grid[r1, j])
        # Image 2 of the images column reaches into the colour-bar row: its name below it shares the
        # space of the bars' labels instead of pushing the rows apart.
        bottom = sf.add_subplot(grid[r2:, j] if p is None else grid[r2, j])
        if p is None:
            _image_axis(top, expl.image1)
            _image_axis(bottom, expl.image2)
            _title(top, wrap(image_title(expl, 1), side, settings), settings)
            if settings.titles:
                bottom.set_xlabel(wrap(image_title(expl, 2), side, settings), fontsize=settings.font_size,
                                  labelpad=2, parse_math=False)
        else:
            _image_axis(top, p.overlay1)
            _image_axis(bottom, p.overlay2)
            if block.titles[j]:
                _title(top, wrap(p.label, side, settings), settings)
        letter(top, block.letters[j], settings)
    if block.heading:  # the title of an empty axes over the block: constrained layout makes room for it
        head = sf.add_subplot(grid[0, :])
        head.axis("off")
        head.set_title(wrap(block.heading, cols * side, settings), loc="left", fontsize=settings.font_size,
                       fontweight="bold", pad=0,
                       parse_math=False)
    if not bars:
        return
    for which, row in ((1, "bar1"), (2, "bar2")):
        if row not in rows:
            continue
        for a, b, p in _bar_groups(block.columns, which if per_map else 2, settings.scope):
            if block.bar_keys is not None and (p.units, p.signed) not in block.bar_keys:
                continue
            cell = sf.add_subplot(grid[rows.index(row), a:b + 1])
            cell.axis("off")
            cax = cell.inset_axes((0.06, 0.0, 0.88, 1.0))  # a gap between neighbouring bars
            cmap = settings.diverging_cmap if p.signed else settings.cmap
            colour_bar(sf, cax, p.range1 if (which == 1) else p.range2, p.units, cmap, p.signed, settings,
                       side * (b - a + 1) * 0.88)


# --------------------------------------------------------------------------------------------------
# Bar charts (gates view, summary)
# --------------------------------------------------------------------------------------------------


def _style_axis(ax, settings: FigureSettings) -> None:
    ax.tick_params(labelsize=settings.font_size, length=2, pad=1.5)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def gate_channels(expl: PairExplanation, k: int) -> tuple[list[int], int]:
    """The channels of the gates panel: the top-k of g₁ (A's gate), then those of g₂'s top-k (B's
    gate) that are not among them; and how many of the first kind there are."""
    c1, c2 = expl.channels.get("apinet_gate1"), expl.channels.get("apinet_gate2")
    top1 = [int(i) for i in (c1.indices if c1 is not None else np.asarray(expl.gate_order1))[:k]]
    top2 = [int(i) for i in (c2.indices if c2 is not None else np.asarray(expl.gate_order2))[:k]]
    return top1 + [i for i in top2 if i not in top1], len(top1)


def gate_bars(ax, expl: PairExplanation, settings: FigureSettings, width_in: float) -> None:
    """Gate values g₁, g₂ at the top-k channels of both gates (A's first); the legend above the axes."""
    idx, n1 = gate_channels(expl, settings.k)
    pos = np.arange(len(idx))
    ax.bar(pos - 0.2, expl.gate1[idx], 0.4, label="g₁ (A's gate)", color="#1b6ca8")
    ax.bar(pos + 0.2, expl.gate2[idx], 0.4, label="g₂ (B's gate)", color="#e07b39")
    if n1 < len(idx):  # where B's top channels begin
        ax.axvline(n1 - 0.5, color="0.6", linewidth=0.6, linestyle=":")
    labels = [str(int(i)) for i in idx]
    widest = max(len(s) for s in labels) * 0.6 * settings.font_size / 72 + 0.06
    ax.set_xticks(pos, labels, rotation=0 if widest * len(idx) < width_in * 0.9 else 90)
    ranked_by = {"gate_x_activation": "g·x", "contribution": "W(1+g)x"}.get((expl.settings or {}).get("rank_by"), "g")
    more = f", then of g₂ (B)" if n1 < len(idx) else " = of g₂ (B)"
    ax.set_xlabel(f"channel: top-{n1} of g₁ (A){more} by {ranked_by}", fontsize=settings.font_size)
    ax.set_ylabel("gate value", fontsize=settings.font_size)
    ax.set_ylim(0, 1)
    ax.set_xlim(-0.6, len(idx) - 0.4)
    ax.legend(fontsize=settings.font_size, frameon=False, loc="lower right", bbox_to_anchor=(1.0, 1.0),
              ncols=2, borderaxespad=0.2, handlelength=1.0, columnspacing=0.8, handletextpad=0.4)
    _style_axis(ax, settings)


def score_bars(ax, expl: PairExplanation, settings: FigureSettings) -> None:
    """p(reference class) of each image through its own gate (self) and its partner's (other)."""
    values = [expl.p_self1, expl.p_other1, expl.p_self2, expl.p_other2]
    labels = ["A\nself", "A\nother", "B\nself", "B\nother"]
    ax.bar(np.arange(4), values, color=["#1b6ca8", "#8fb8d8", "#e07b39", "#f0bd9c"])
    ax.set_xticks(np.arange(4), labels)
    ax.set_ylim(0, 1)
    ax.set_ylabel("p(reference class)", fontsize=settings.font_size)
    ax.set_xlabel(f"ranking terms A {expl.rank_term1:.3f}, B {expl.rank_term2:.3f}", fontsize=settings.font_size)
    _style_axis(ax, settings)


def bars_height(settings: FigureSettings) -> tuple[float, bool]:
    """``(height in inches, stacked)``: side by side from 5 in wide, else one above the other."""
    stacked = settings.width_inches < 5.0
    one = 1.05 + 6 * line_height(settings)  # axes + legend / letter row + two-line ticks + x label
    return (2 * one if stacked else one), stacked


def draw_bars(sf, expl: PairExplanation, settings: FigureSettings, letters: tuple[str | None, str | None],
              heading: str | None = None) -> None:
    _, stacked = bars_height(settings)
    width = settings.width_inches
    grid = sf.add_gridspec(2, 1) if stacked else sf.add_gridspec(1, 2)
    left = sf.add_subplot(grid[0, 0])
    right = sf.add_subplot(grid[1, 0] if stacked else grid[0, 1])
    gate_bars(left, expl, settings, width if stacked else width / 2)
    score_bars(right, expl, settings)
    for ax, text in zip((left, right), letters):
        if text and settings.panel_letters:
            ax.set_title(text, loc="left", fontsize=settings.font_size + 1, fontweight="bold", pad=2)
    if heading:
        sf.suptitle(heading, x=0.0, ha="left", fontsize=settings.font_size, fontweight="bold", parse_math=False)


def _square_deficit(fig) -> float:
    """Inches the figure is short of for every image panel to be as tall as its cell is wide (then
    all panels of a row have one size, whatever the titles above them)."""
    worst, rows = 0.0, set()
    for ax in fig.get_axes():
        if not (ax.images and ax.axison and ax.get_aspect() == 1.0):
            continue
        sub = ax.get_figure(root=False)  # positions are relative to the sub-figure
        box = ax.get_position(original=True)
        cell_w, cell_h = box.width * sub.bbox.width / fig.dpi, box.height * sub.bbox.height / fig.dpi
        worst = max(worst, cell_w - cell_h)
        rows.add((id(sub), round(box.y0, 3)))
    return worst * len(rows)


def _text_span(fig) -> tuple[float, float]:
    """Lowest and highest pixel of any drawn text (the canvas is drawn first)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.draw_without_rendering()  # lays out and measures text; nothing is rasterised
    return _drawn_text_span(fig)


def _drawn_text_span(fig) -> tuple[float, float]:
    """Lowest and highest pixel of any text of a figure whose canvas has just been drawn."""
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    hidden = {id(t) for ax in fig.get_axes() if not ax.axison
              for t in ax.xaxis.findobj(Text) + ax.yaxis.findobj(Text)}  # tick labels never drawn
    low, high = 0.0, fig.bbox.height
    for t in fig.findobj(Text):
        if t.get_visible() and t.get_text().strip() and id(t) not in hidden:
            box = t.get_window_extent(renderer)
            low, high = min(low, box.y0), max(high, box.y1)
    return low, high


def texts_inside(fig) -> bool:
    """Whether every text lies inside the canvas at the figure's current size."""
    low, high = _text_span(fig)
    return low >= -0.5 and high <= fig.bbox.height + 0.5


def fit_height(fig, pad: float = 0.04, rounds: int = 5) -> None:
    """Grow the figure until every text is inside the canvas (constrained layout leaves a title a few
    points outside when a row is crowded); each round lays the figure out again."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    for _ in range(rounds):
        fig.draw_without_rendering()  # the layout and the text's extents, without rasterising
        grow = _square_deficit(fig)
        if grow > 0.02:  # images limited by their rows' height: give the rows what the images need
            fig.set_figheight(fig.get_figheight() + grow)
            continue
        low, high = _drawn_text_span(fig)
        excess = (high - fig.bbox.height - low) / fig.dpi
        if excess <= 0:
            return
        fig.set_figheight(fig.get_figheight() + excess + pad)


def new_figure(width: float, heights: list[float], settings: FigureSettings) -> tuple[Any, list[Any]]:
    """A constrained-layout figure of ``width`` inches, with one sub-figure per entry of ``heights``."""
    from matplotlib.figure import Figure

    title = (n_lines(settings.title) * line_height(settings) + 0.1) if settings.title else 0.0
    fig = Figure(figsize=(width, sum(heights) + title), dpi=100, layout="constrained")
    fig.get_layout_engine().set(w_pad=3 / 72, h_pad=3 / 72, wspace=0.0, hspace=0.0)
    subs = fig.subfigures(len(heights), 1, height_ratios=heights, squeeze=False)[:, 0]
    if settings.title:
        fig.suptitle(wrap(settings.title, width - EDGE, settings), fontsize=settings.font_size + 1,
                     parse_math=False)
    return fig, list(subs)
