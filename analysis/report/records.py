"""A study's records: the files of its tables and plots that are checked in, copied from the study's
folder into ``results/reference/<grid>/<scale>/`` by ``--record DIR`` on ``python -m analysis table``
and ``plots``, so that no record is copied or renamed by hand.

    >>> [name for name in TABLES if name.endswith(".md")]
    ['table.md', 'headline.md', 'comparisons.md', 'curve.md']
"""

from __future__ import annotations

from pathlib import Path

from usm.files import atomic_write, check_writable

# what the table command writes, as the records keep it (a learning curve's and a calibration's only
# where the study has them); table.tex and table.csv stay in the study's folder
TABLES = ("table.md", "headline.md", "comparisons.md", "runs.csv", "curve.md", "curve.csv", "calibration.json")
# the plots pages show (PNG; the PDFs stay in the study's folder)
PLOTS = tuple(f"plots/{name}.png" for name in
              ("samples", "learning_curves", "learning_curves_by_time", "loss_curves", "efficiency"))


def copy_records(study_dir: str | Path, dest: str | Path, names: tuple[str, ...]) -> list[Path]:
    """Copy each of ``names`` (paths inside ``study_dir``) that exists to ``dest``, under its file
    name; returns the copies. Each is written whole or not at all."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    check_writable(dest, "--record", "the study's records")
    copies = []
    for name in names:
        source = Path(study_dir) / name
        if source.is_file():
            atomic_write(dest / source.name, source.read_bytes())
            copies.append(dest / source.name)
    return copies
