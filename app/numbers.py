"""How the app writes the numbers a teacher points at: signed, with significant digits."""

from __future__ import annotations

__all__ = ["margin_text", "signed_sig"]


def signed_sig(value: float, digits: int = 3) -> str:
    """A signed number with ``digits`` significant digits: never "+0.000" for a small non-zero value."""
    value = float(value)
    if value == 0.0:
        return "0"
    return f"{value:+.{digits}g}"


def margin_text(facts) -> str:
    """An image's ranking-loss term and what it says: ``"0.0377 (not met)"``, ``"0 (met)"`` (the margin)
    (``facts``: an :class:`apinet.explain.facts.ImageFacts`)."""
    term = "0" if facts.rank_term == 0 else f"{facts.rank_term:.3g}"
    return f"{term} ({'met' if facts.margin_met else 'not met'})"
