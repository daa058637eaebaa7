"""Amounts as a reviewer reads them, shared by the preview and `mlstack diff`."""

import math


def format_money(amount: float | None) -> str:
    """Dollars with three significant digits and no exponent: 0.0333, 0.00275, 0.0000586; 2 decimals from 0.1 up."""
    if amount is None:
        return "unpriced"
    if amount == 0:
        return "0"
    decimals = max(2, 2 - math.floor(math.log10(abs(amount))))
    return f"{amount:.{decimals}f}"
