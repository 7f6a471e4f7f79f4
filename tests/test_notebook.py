"""notebooks/paper_tables.ipynb runs top to bottom on a generated study and shows its tables."""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.fake_study import make_study
from tests.markdown_table import rows

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "paper_tables.ipynb"


@pytest.mark.slow
def test_paper_tables_notebook_executes(tmp_path, monkeypatch):
    results = tmp_path / "results"
    make_study(results / "ablations")
    (results / "profile").mkdir()
    record = {"model": "USM-T/2", "image_size": 128, "params": 500_000, "gflops": 0.01, "gflops_scan": 0.002,
              "activation_bytes": 2**20, "activation_bytes_checkpointed": 2**18, "device_name": "test CPU"}
    (results / "profile" / "USM-T_2_128.json").write_text(json.dumps(record))
    monkeypatch.setenv("USM_RESULTS", str(results))
    monkeypatch.setenv("USM_STUDIES", "ablations,paper")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent.parent)}}).execute()
    text = "\n".join(str(output.get("data", {}).get("text/markdown", output.get("text", "")))
                     for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)
    assert "| USM-T/2 | 128 | 0.5 |" in text and "Measured on: test CPU" in text
    table = {row[0]: row for row in rows(text.split("### ablations", 1)[1])}
    assert "0.420 ± 0.0200" in table["recipe"] and table["no-skip"][2] == "-0.295"  # the table, then the comparisons
    assert "study 'paper': no folder" in text
    assert "| GFLOPs, unconditional, 256 px: USM | 20.7 | - |" in text  # the claims table, same code as the CLI
