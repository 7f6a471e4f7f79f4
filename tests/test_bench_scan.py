"""The scan benchmark runs end to end at a small shape and reports ratios for what it timed."""

from analysis.bench_scan import main


def test_bench_scan_small_shape(capsys):
    result = main(["--shape", "1", "16", "32", "4", "--repeats", "1", "--json"])
    assert set(result["seconds"]) >= {"reference", "torch"}
    assert all(s > 0 for s in result["seconds"].values())
    assert "reference/torch" in result["speedup_of_torch_over"]
    assert '"seconds"' in capsys.readouterr().out
