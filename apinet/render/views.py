"""The views of an explanation: one vocabulary for the figures, the CLI (``explain --view``) and the app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..explain import PairExplanation

__all__ = ["VIEWS", "VIEW_LIST", "View", "available_views", "get_view"]


@dataclass(frozen=True)
class View:
    """One view: ``slug`` (CLI value, URL, file suffix), ``label`` (menus, captions) and ``needs``, the
    :class:`~apinet.explain.PairExplanation` field that must be non-empty for it to exist ("" = always)."""

    slug: str
    label: str
    needs: str = ""
    maps: bool = True  # drawn as overlays on the images (False: bar charts)

    def available(self, expl: PairExplanation) -> bool:
        return not self.needs or bool(getattr(expl, self.needs, None))


#: Every view, in menu order.
VIEW_LIST: tuple[View, ...] = (
    View("summary", "Summary (images, top channels, LTPA, CAM, gates, scores)"),
    View("channels", "Top-k channels", "channels"),
    View("ltpa", "LTPA maps", "ltpa"),
    View("cams", "CAMs", "cams"),
    View("gates", "Gates and pairwise scores", maps=False),
    View("a2", "A² gather maps", "a2"),
    View("exact", "Exact pair-path maps (signed)", "exact_cams"),
    View("contrast", "Why A and not B (class contrast, Finer-CAM)", "contrast_cams"),
)
#: The slugs of :data:`VIEW_LIST` (what :func:`~apinet.render.pair_figure` accepts).
VIEWS: tuple[str, ...] = tuple(v.slug for v in VIEW_LIST)
_BY_SLUG = {v.slug: v for v in VIEW_LIST}


def get_view(slug: str | View) -> View:
    """The :class:`View` of ``slug`` (ValueError naming the choices otherwise)."""
    if isinstance(slug, View):
        return slug
    try:
        return _BY_SLUG[slug]
    except KeyError:
        raise ValueError(f"unknown view {slug!r}; choose from {', '.join(VIEWS)}") from None


def available_views(expl: PairExplanation) -> tuple[View, ...]:
    """The views ``expl`` has the data for (e.g. no ``a2`` without A² blocks)."""
    return tuple(v for v in VIEW_LIST if v.available(expl))
