"""Numbers in the README that come from a checked-in record are the record, not a copy that drifts.

A block ``<!-- generated: PATH ... -->`` ... ``<!-- generated: end -->`` must equal the file PATH
(relative to the repository), which the command named in the marker writes.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- generated: (\S+)[^\n]*-->\n(.*?)\n<!-- generated: end -->", re.S)


def test_generated_readme_blocks_equal_their_records():
    readme = (ROOT / "README.md").read_text()
    blocks = BLOCK.findall(readme)
    assert len(blocks) >= 2  # the smoke table and its comparisons
    for path, block in blocks:
        assert block.strip() == (ROOT / path).read_text().strip(), f"README block of {path} differs from the file"
