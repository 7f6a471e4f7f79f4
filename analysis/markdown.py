"""Markdown tables, written one way for every report of the project.

    >>> print(table(["model", "GFLOPs"], [["USM-B/1", "50.87"], ["ZigMa-B/1", "97.58"]]))
    | model | GFLOPs |
    | --- | --- |
    | USM-B/1 | 50.87 |
    | ZigMa-B/1 | 97.58 |

Cells are taken as given (format numbers before); a cell's ``|`` is escaped. Study tables, whose
columns a reader scans across many rows, are padded by tabulate instead (``analysis/tables.py``).
"""

from __future__ import annotations


def table(header, rows) -> str:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    header = list(header)
    return "\n".join([line(header), "|" + " --- |" * len(header), *(line(row) for row in rows)])
