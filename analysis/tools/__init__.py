"""Repository upkeep: the generated blocks of the docs and the remaking of records."""
