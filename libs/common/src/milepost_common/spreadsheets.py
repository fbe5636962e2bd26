"""Text written into the CSV files people open in a spreadsheet."""

from __future__ import annotations

# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell_text(text: str) -> str:
    """``text`` as a spreadsheet shows it, never runs it: a name a tenant chose, such as
    ``=HYPERLINK(…)``, gets a leading apostrophe (the OWASP advice on CSV injection)."""
    return "'" + text if text.startswith(_FORMULA_START) else text
