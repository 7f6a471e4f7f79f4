"""A process uses the CPUs it was given, and no more.

    >>> from usm.threads import cpu_share
    >>> len(cpu_share()) >= 1
    True

Two 2-thread torch processes on 2 cores each run 10-20x slower than one alone (measured on the
2-core dev machine in different sessions; each thread waits for the other process's). So every
entry point calls ``use_cpu_share()`` first: it reads the share of
this process -- ``USM_CPUS`` (a CPU list the local launcher gives each job, e.g. ``"0"`` or
``"2,3"``), else the affinity mask (which SLURM sets) -- pins the process to it, and sets torch's
thread count (and through it the compiled scan's) to the number of CPUs in the share, or
``SLURM_CPUS_PER_TASK`` or ``OMP_NUM_THREADS`` where they are smaller.
"""

from __future__ import annotations

import os

import torch


class CPUShareError(ValueError):
    """USM_CPUS names CPUs that do not exist or are not this process's; the message lists its own."""


def parse_cpus(text: str) -> list[int]:
    """``"0,2-3"`` -> [0, 2, 3]."""
    cpus: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        if not (first.isdigit() and (last.isdigit() or not last)):
            raise CPUShareError(f"USM_CPUS={text!r}: expected a list such as '0' or '0,2-3'")
        cpus += list(range(int(first), int(last or first) + 1))
    if not cpus:
        raise CPUShareError(f"USM_CPUS={text!r} names no CPU; expected a list such as '0' or '0,2-3'")
    return sorted(set(cpus))


def cpu_share() -> list[int]:
    """The CPUs this process may use."""
    if os.environ.get("USM_CPUS"):
        return parse_cpus(os.environ["USM_CPUS"])
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def use_cpu_share() -> int:
    """Pin this process to its share and size torch's thread pool to it; returns the thread count."""
    cpus = cpu_share()
    if os.environ.get("USM_CPUS") and hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        if not set(cpus) <= set(allowed):
            raise CPUShareError(f"USM_CPUS={os.environ['USM_CPUS']} names CPUs this process may not use "
                                f"({', '.join(map(str, sorted(set(cpus) - set(allowed))))}); its CPUs: "
                                f"{', '.join(map(str, allowed))}")
        os.sched_setaffinity(0, cpus)
    threads = len(cpus)
    for limit in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):  # never more than the user or SLURM allows
        if os.environ.get(limit, "").isdigit():
            threads = max(1, min(threads, int(os.environ[limit])))
    torch.set_num_threads(threads)
    return threads


def split_cpus(cpus: list[int], jobs: int) -> list[str]:
    """``jobs`` disjoint shares of ``cpus`` as USM_CPUS strings (with more jobs than CPUs, they share)."""
    jobs = max(1, jobs)
    if jobs >= len(cpus):
        return [str(cpus[i % len(cpus)]) for i in range(jobs)]
    size = len(cpus) // jobs
    return [",".join(map(str, cpus[i * size:(i + 1) * size])) for i in range(jobs)]
