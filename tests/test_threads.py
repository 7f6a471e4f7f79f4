"""Each process uses only its share of the CPUs: parsing, splitting and applying it."""

import os

import pytest
import torch

from usm.threads import cpu_share, parse_cpus, split_cpus, use_cpu_share


def test_cpu_lists_parse_and_split_into_disjoint_shares():
    assert parse_cpus("0,2-3, 5") == [0, 2, 3, 5]
    with pytest.raises(ValueError, match="names no CPU"):
        parse_cpus(",")
    assert split_cpus([0, 1], 2) == ["0", "1"]
    assert split_cpus([0, 1, 2, 3], 2) == ["0,1", "2,3"]
    assert split_cpus([0, 1], 3) == ["0", "1", "0"]  # more jobs than CPUs: they share, round robin


@pytest.fixture
def restore_threads():
    threads, affinity = torch.get_num_threads(), os.sched_getaffinity(0)
    yield
    torch.set_num_threads(threads)
    os.sched_setaffinity(0, affinity)


def test_a_process_takes_its_share_and_no_more(monkeypatch, restore_threads):
    first = sorted(os.sched_getaffinity(0))[0]
    monkeypatch.setenv("USM_CPUS", str(first))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert use_cpu_share() == 1 and torch.get_num_threads() == 1
    assert os.sched_getaffinity(0) == {first} and cpu_share() == [first]


def test_slurm_and_omp_limits_are_respected(monkeypatch, restore_threads):
    monkeypatch.delenv("USM_CPUS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert use_cpu_share() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert use_cpu_share() == 1
