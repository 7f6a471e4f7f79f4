"""Cost curves: model sizes x resolutions, profiled (GFLOPs, activation memory, throughput); no training."""

from experiments.grid import Axis, Grid, Scale

SCALING = Grid(
    name="scaling",
    description="GFLOPs and memory against model size and resolution",
    axes=(Axis("model", "model", "model", {"USM-S": "USM-S/1", "USM-B": "USM-B/1", "ZigMa-S": "ZigMa-S/1",
                                           "ZigMa-B": "ZigMa-B/1", "DiT-S": "DiT-S/2", "DiT-B": "DiT-B/2"}),),
    recipe={"model": "USM-B"},
    arms="factorial",
    scales={
        "smoke": Scale(model="USM-T/2", data="shapes", resolution=32, num_samples=0, metric="profile",
                       train={}, image_sizes=(128, 256),
                       axis_values={"model": {"USM-T": "USM-T/2", "ZigMa-T": "ZigMa-T/2", "DiT-T": "DiT-T/2"}}),
        "paper": Scale(model="USM-B/1", data="shapes", resolution=256, num_samples=0, metric="profile",
                       train={}, image_sizes=(256, 512, 1024)),
    },
)
