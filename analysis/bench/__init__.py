"""Benchmarks and checks that run models and grids: the scan benchmark, the training-step profile,
the trainer's rate and the GPU check. The top of the stack, beside the command line."""
