r"""Tables, written here for every report of the project: Markdown, and booktabs LaTeX.

    >>> print(table(["model", "GFLOPs"], [["USM-B/1", "50.87"], ["ZigMa-B/1", "97.58"]]))
    | model | GFLOPs |
    | --- | --- |
    | USM-B/1 | 50.87 |
    | ZigMa-B/1 | 97.58 |

    >>> text = latex(["arm", "coverage"], [["recipe -> no skip", "0.5 ± 0.1 †"]])
    >>> all(symbol in text for symbol in ("recipe $\\to$ no skip", "0.5 $\\pm$ 0.1 $^\\dagger$", "\\toprule"))
    True

Cells are taken as given (format numbers before); a cell's ``|`` is escaped. ``padded=True``
writes every cell of a column to one width (tabulate's ``github`` format), for tables a reader scans
down many rows in a terminal (a study's table, the metric validation); ``numbers=True`` then aligns
the cells that read as numbers to the right.

    >>> print(table(["arm", "seeds"], [["recipe", "2"], ["skip_conn=False", "10"]], padded=True))
    | arm             | seeds   |
    |-----------------|---------|
    | recipe          | 2       |
    | skip_conn=False | 10      |
"""

from __future__ import annotations


def table(header, rows, padded: bool = False, numbers: bool = False) -> str:
    header = list(header)
    if padded:
        from tabulate import tabulate

        return tabulate(rows, headers=header, tablefmt="github", disable_numparse=not numbers)

    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + " --- |" * len(header), *(line(row) for row in rows)])


def latex(header, rows) -> str:
    """booktabs LaTeX (tabulate escapes LaTeX's special characters; the three symbols are set here)."""
    from tabulate import tabulate

    text = tabulate(rows, headers=list(header), tablefmt="latex_booktabs", disable_numparse=True)
    return text.replace("±", r"$\pm$").replace("†", r"$^\dagger$").replace(r"-\ensuremath{>}", r"$\to$")
