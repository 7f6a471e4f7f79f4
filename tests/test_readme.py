"""The README and docs/ say what the repository holds: numbers from checked-in records are the
records, not copies that drift, and every file they point to exists.

A block ``<!-- generated: PATH ... -->`` ... ``<!-- generated: end -->`` must equal the file PATH
(relative to the repository), which the command named in the marker writes;
``python -m analysis doc-blocks`` refreshes them.
"""

import re

import pytest

from analysis.tools.doc_blocks import ROOT, blocks, pages, prose_numbers, shown
from usm.provenance import stamp, stamp_line

PAGES = pages()
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")  # Markdown links and images
CODE_PATH = re.compile(r"`((?:usm|analysis|experiments|baselines|tests|results|slurm|notebooks|docs)/[\w./-]+)`")
TEST_NAME = re.compile(r"`(test_\w+)(?:\[[^\]`]*\])?`")  # a test named in backticks, parameters optional


def test_generated_blocks_equal_their_records():
    found_on = {str(page.relative_to(ROOT)): blocks(page.read_text()) for page in PAGES}
    assert found_on["README.md"], "the README shows the main command's table"
    assert sum(map(len, found_on.values())) >= 5  # smoke and cpu tables and comparisons, the control table
    for page, found in found_on.items():
        for path, command, block in found:
            assert block.strip() == shown(path, command), f"{page}: the block of {path} differs"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_and_named_path_exists(page):
    """Links resolve from the page's folder; a path in backticks (`usm/...`) from the repository.
    A path with a glob or a placeholder is not a file name, and results/ outside results/reference/
    is what a run writes: both are left alone."""
    text = page.read_text()
    missing = [link for link in LINK.findall(text)
               if "://" not in link and not (page.parent / link).exists()]
    missing += [path for path in CODE_PATH.findall(text)
                if not any(c in path for c in "*<>") and not (ROOT / path.rstrip(".")).exists()
                and (not path.startswith("results/") or path.startswith("results/reference/"))]
    assert not missing, f"{page.name} points to what is not there: {missing}"


def test_every_test_a_page_names_exists():
    """Pages that say which test shows a fix name it; a renamed test must not leave the page behind."""
    defined = set(re.findall(r"^\s*def (test_\w+)", "\n".join(
        path.read_text() for path in (ROOT / "tests").glob("*.py")), flags=re.M))
    named = {name for page in PAGES for name in TEST_NAME.findall(page.read_text())}
    assert len(named) >= 15
    assert not named - defined, f"the docs name tests that do not exist: {sorted(named - defined)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_copies_a_measurement_into_its_prose(page):
    """Measured numbers (decimals, percentages, times, speeds, sizes in MiB, ratios) stand in
    generated blocks, from a record, where a rerun updates them; prose says what they show.
    ``python -m analysis doc-blocks --numbers`` lists what this finds."""
    assert prose_numbers(page.read_text()) == []


def test_what_counts_as_a_copied_measurement():
    assert prose_numbers("precision 0.81 against 0.95, 7% faster, in 62 min, 1.9x, 24 MiB") == [
        "0.81", "0.95", "7%", "62 min", "1.9x", "24 MiB"]
    assert prose_numbers("batch 8, 960 steps, USM-T/1 at 16x16, torch 2.14.1, (2, 1536, 1024, 16)") == []
    assert prose_numbers("`0.5` and ```\n0.25 s\n``` and [a](results/v0.1.md)") == []
    assert prose_numbers("<!-- generated: r.md (cmd) -->\n| 0.3 |\n<!-- generated: end -->\nthen 0.4") == ["0.4"]


def test_the_readme_stays_a_front_door():
    """The three commands, what it is, where things are, the main result and the paper's verdicts in a
    short page: at most 10 KB, and no line a terminal wraps (160 characters) outside a table."""
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 10 * 1024, len(text.encode())
    wide = [line[:60] for line in text.splitlines() if len(line) > 160 and not line.startswith("|")]
    assert not wide, wide
    assert text.split("```bash\n")[1].split("```")[0].count("\n") == 3  # set up, run, test


def test_an_empty_block_is_filled_without_touching_the_prose_after_it(tmp_path):
    from analysis.tools.doc_blocks import refreshed

    code = stamp_line(stamp("scan"))
    (tmp_path / "a.md").write_text(f"| a |\n\n{code}\n")
    (tmp_path / "b.md").write_text(f"| b |\n\n{code}\n")
    page = ("<!-- generated: a.md (cmd) -->\n<!-- generated: end -->\n\nprose between\n\n"
            "<!-- generated: b.md (cmd) -->\nold\n<!-- generated: end -->\n")
    assert refreshed(page, tmp_path) == (f"<!-- generated: a.md (cmd) -->\n| a |\n\n{code}\n<!-- generated: end -->\n\n"
                                         f"prose between\n\n<!-- generated: b.md (cmd) -->\n| b |\n\n{code}\n"
                                         "<!-- generated: end -->\n")
    assert [path for path, _, _ in blocks(refreshed(page, tmp_path))] == ["a.md", "b.md"]
