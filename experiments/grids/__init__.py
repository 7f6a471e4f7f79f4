"""The shipped grids, by name (``GRIDS``): ablations, control, paper, scaling."""

from experiments.grids.ablations import ABLATIONS
from experiments.grids.control import CONTROL
from experiments.grids.paper import PAPER
from experiments.grids.scaling import SCALING

GRIDS = {grid.name: grid for grid in (ABLATIONS, CONTROL, PAPER, SCALING)}
