"""Table cells of the run report: metric values, signed and relative changes, and whether a
change is a gain or a loss (`tone`), shared by its sections and both its formats.
"""

from __future__ import annotations

_LOWER_IS_BETTER = {"loss", "perplexity"}
_NEUTRAL = {"length_words"}
_EPSILON = 1e-9


def number(value) -> str:
    """A metric value for a table cell: thousands separated, 3 decimals below 100."""
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"


def signed(value) -> str:
    """A change for a table cell, with its sign."""
    if value is not None and abs(value) < _EPSILON:
        return number(0.0)
    text = number(value)
    return text if value is None or text.startswith("-") else "+" + text


def percent(fraction) -> str:
    """A relative change (0.25 -> "+25%"); "—" when undefined (the baseline is 0)."""
    if fraction is None:
        return "—"
    value = 100 * fraction
    return f"{value:+.1f}%" if abs(value) < 10 else f"{value:+,.0f}%"


def tone(metric: str, change) -> str:
    """ "gain" or "loss" for a change that is better or worse, "" for none or no direction."""
    if change is None or metric in _NEUTRAL or abs(change) < _EPSILON:
        return ""
    better = change < 0 if metric in _LOWER_IS_BETTER else change > 0
    return "gain" if better else "loss"
