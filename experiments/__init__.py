"""Experiment grids and the launcher that runs them (``python experiments/run.py --grid NAME``)."""
