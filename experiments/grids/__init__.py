"""The shipped grids, by name (``GRIDS``): ablations, paper, scaling."""

from experiments.grids.ablations import ABLATIONS
from experiments.grids.paper import PAPER
from experiments.grids.scaling import SCALING

GRIDS = {grid.name: grid for grid in (ABLATIONS, PAPER, SCALING)}
