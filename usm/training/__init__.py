"""Training and sampling as library calls: typed configs in, outcomes out.

    >>> from usm.training import Config, SampleConfig, generate, train

| module | what |
| --- | --- |
| ``config`` | ``Config`` (model, data, train, run sections), validation, the CLI flags |
| ``loop`` | ``train(cfg) -> Outcome``: setup, resume, the step loop |
| ``run_dir`` | a run directory's files, config, lock, and the model it describes |
| ``checkpoint`` | atomic, checksummed checkpoints; fallback past broken ones |
| ``ema`` | the EMA copy of the weights |
| ``sampling`` | ``generate(SampleConfig) -> SampleResult`` with provenance |

``python -m usm.train`` and ``python -m usm.sample`` are thin command lines over ``train`` and
``generate``; ``experiments`` calls the functions directly.
"""

from usm.data.folder import DataError
from usm.data.latents import VAEUnavailable
from usm.files import DamagedFile, WriteError
from usm.threads import CPUShareError
from usm.training.config import Config, ConfigError
from usm.training.loop import NoVerifiedCheckpoint, Outcome, train
from usm.training.run_dir import ConfigMismatch, RunBusy, RunDirError
from usm.training.sampling import SampleConfig, SampleError, SampleResult, generate

# What a user can fix: the command lines print these as one line and exit with code 2.
USER_ERRORS = (ConfigError, DataError, ConfigMismatch, RunBusy, RunDirError, NoVerifiedCheckpoint,
               VAEUnavailable, SampleError, WriteError, DamagedFile, CPUShareError)

__all__ = ["Config", "ConfigError", "Outcome", "SampleConfig", "SampleError", "SampleResult", "USER_ERRORS",
           "generate", "train"]
