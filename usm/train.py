"""Command line of the trainer (``usm.training.train``).

    python -m usm.train --model USM-T/2 --data shapes --run-dir runs/usm-t --max-steps 200 \
        --batch-size 8 --seed 0 --ckpt-every 50
    python -m usm.train ... --dry-run                       # print the resolved config and exit
    torchrun --nproc_per_node 2 -m usm.train ...            # several processes (DDP; gloo on CPU)

Run the same command again to resume from the newest verified checkpoint. Exit codes: 0 the run
reached ``--max-steps``; 2 a bad input or a run directory that cannot be used (one line on stderr
says what and how to fix it; nothing was written); 3 the loss became non-finite (the last good
checkpoint is kept); 4 the invocation ended early (``--time-budget``, ``--max-steps-per-invocation``)
and a rerun resumes, which is what ``slurm/train_one.sbatch`` does.
"""

from __future__ import annotations

import sys

from usm.threads import use_cpu_share

EXIT_USAGE, EXIT_DIVERGED, EXIT_PAUSED = 2, 3, 4
EXIT_CODES = {"done": 0, "dry-run": 0, "diverged": EXIT_DIVERGED, "paused": EXIT_PAUSED}


def main(argv=None) -> int:
    from usm.training import USER_ERRORS, train
    from usm.training.config import parse_args

    try:
        cfg = parse_args(argv)
        use_cpu_share()
        outcome = train(cfg)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_CODES[outcome.status]


if __name__ == "__main__":
    sys.exit(main())
