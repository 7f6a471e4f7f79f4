r"""Tables, written one way for every report of the project: Markdown, and booktabs LaTeX.

    >>> print(table(["model", "GFLOPs"], [["USM-B/1", "50.87"], ["ZigMa-B/1", "97.58"]]))
    | model | GFLOPs |
    | --- | --- |
    | USM-B/1 | 50.87 |
    | ZigMa-B/1 | 97.58 |

    >>> text = latex(["arm", "coverage"], [["recipe -> no skip", "0.5 ± 0.1 †"]])
    >>> all(symbol in text for symbol in ("recipe $\\to$ no skip", "0.5 $\\pm$ 0.1 $^\\dagger$", "\\toprule"))
    True

Cells are taken as given (format numbers before); a cell's ``|`` is escaped. Study tables, whose
columns a reader scans across many rows, are padded by tabulate instead (``analysis/report/tables.py``).
"""

from __future__ import annotations


def table(header, rows) -> str:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    header = list(header)
    return "\n".join([line(header), "|" + " --- |" * len(header), *(line(row) for row in rows)])


def latex(header, rows) -> str:
    """booktabs LaTeX (tabulate escapes LaTeX's special characters; the three symbols are set here)."""
    from tabulate import tabulate

    text = tabulate(rows, headers=list(header), tablefmt="latex_booktabs", disable_numparse=True)
    return text.replace("±", r"$\pm$").replace("†", r"$^\dagger$").replace(r"-\ensuremath{>}", r"$\to$")
