"""What reads records and writes tables: study collection, tables, plots, the paper report, the model
and scale tables. Grids come in as arguments; nothing here imports ``experiments``."""
