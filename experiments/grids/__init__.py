"""The shipped grids, by name (``GRIDS``): ablations, control, paper. Cost curves over model sizes and
resolutions need no training, so they are not a grid: ``python -m analysis profile`` measures them."""

from experiments.grids.ablations import ABLATIONS
from experiments.grids.control import CONTROL
from experiments.grids.paper import PAPER

GRIDS = {grid.name: grid for grid in (ABLATIONS, CONTROL, PAPER)}
