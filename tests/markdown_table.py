"""Read a Markdown table back as cells, whatever its column padding."""


def rows(markdown: str) -> list[list[str]]:
    """The table's rows (the separator row included) as lists of stripped cells; other lines skipped."""
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in markdown.strip().splitlines()
            if line.startswith("|")]
