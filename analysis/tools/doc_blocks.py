"""Refresh the generated blocks of the README and docs/ from the records they show.

    python -m analysis doc-blocks            # rewrite every block from its file; prints what changed
    python -m analysis doc-blocks --check    # exit 1 if any block differs from its file
    python -m analysis doc-blocks --numbers  # the measured-looking numbers left in prose, page by page

A block is ``<!-- generated: PATH (the command that writes PATH) -->`` ... ``<!-- generated: end -->``
and holds exactly the file PATH (relative to the repository). Run the command the marker names,
copy its output to PATH (the checked-in records live in ``results/reference/``), then run this:
the pages then show the record, not a copy typed by hand. ``tests/test_readme.py`` checks the same.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from usm.files import atomic_write
from usm.provenance import is_current, parse_stamps

ROOT = Path(__file__).resolve().parents[2]
# A block's text never holds a marker: an empty block (header, then end) must not reach on to the
# next block's end and swallow the prose between them.
BLOCK = re.compile(r"(<!-- generated: (\S+)([^\n]*)-->\n)((?:(?!<!-- generated:).)*?)\n?(<!-- generated: end -->)",
                   re.S)


# A number a reader would take for a measurement: a decimal, a percentage, or a count of time,
# speed, memory or a ratio. Version strings (two dots) and numbers inside identifiers are not.
NUMBER = re.compile(r"(?<![\w/.\-#])(\d+(?:,\d{3})*(?:\.\d+)?)(?![\w.]*\.\d)(?!\d)(x\b|\s?(?:%|s\b|min\b|ms\b|MiB\b|"
                    r"GiB\b|steps/s|images/s|GFLOP/s))?")
NOT_PROSE = re.compile(r"<!-- generated:.*?<!-- generated: end -->|```.*?```|`[^`\n]*`|\]\([^)]*\)", re.S)


def prose_numbers(text: str) -> list[str]:
    """The measured-looking numbers of a page outside generated blocks, code and link targets: the
    ones that would have to be copied from a record by hand, and drift from it."""
    return [number + (unit or "") for number, unit in NUMBER.findall(NOT_PROSE.sub(" ", text))
            if unit or "." in number]


def pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def blocks(text: str) -> list[tuple[str, str, str]]:
    """(record path, the marker's command, block text) of every generated block of a page."""
    return [(m.group(2), _command(m.group(3)), m.group(4)) for m in BLOCK.finditer(text)]


def _command(marker_rest: str) -> str:
    return marker_rest.strip().removeprefix("(").removesuffix(")").strip()


def shown(path: str, command: str = "", root: Path = ROOT) -> str:
    """What a block of the record at ``path`` holds: the record, then, when the code it names has
    changed since it was measured (or it names none), a line saying so with the command that remakes it."""
    text = (root / path).read_text().strip()
    stamps = parse_stamps(text)
    old = sorted({s.rpartition("@")[0] for s in stamps if not is_current(s)})
    if stamps and not old:
        return text
    what = f"`{'`, `'.join(old)}` changed since" if stamps else "the record names no code"
    made_by = command or "a command the marker does not name"
    return text + f"\n\n**Measured on older code** ({what});\nmade by: {made_by}."


def refreshed(text: str, root: Path = ROOT) -> str:
    """The page with every block replaced by its record's current text."""
    return BLOCK.sub(lambda m: m.group(1) + shown(m.group(2), _command(m.group(3)), root) + "\n" + m.group(5), text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis doc-blocks", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report blocks that differ (exit 1 if any)")
    parser.add_argument("--numbers", action="store_true",
                        help="list the measured-looking numbers in each page's prose (outside blocks and code)")
    args = parser.parse_args(argv)
    if args.numbers:
        for page in pages():
            found = prose_numbers(page.read_text())
            print(f"{page.relative_to(ROOT)}: {len(found)}" + (f": {', '.join(found)}" if found else ""))
        return 0
    stale = []
    for page in pages():
        text = page.read_text()
        new = refreshed(text)
        if new != text:
            stale.append(page.relative_to(ROOT))
            if not args.check:
                atomic_write(page, new)
    verb = "differ" if args.check else "refreshed"
    print(f"{verb}: {', '.join(map(str, stale))}" if stale else "every generated block equals its record")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
