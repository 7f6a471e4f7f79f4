"""The paper's published numbers, one data file (``analysis/metrics/paper_claims.json``, each number with the
place in the paper it comes from), read by the paper report and by the FLOP conventions alike.

    >>> sorted(PAPER_MODELS)
    ['USM', 'ZigMa']
    >>> {"paper", "claims"} <= set(load_claims())
    True
"""

from __future__ import annotations

import json
from pathlib import Path

CLAIMS_FILE = Path(__file__).with_name("paper_claims.json")
PAPER_MODELS = {"USM": "USM-B/1", "ZigMa": "ZigMa-B/1"}  # the sizes the paper's efficiency claims compare


def load_claims() -> dict:
    return json.loads(CLAIMS_FILE.read_text())
