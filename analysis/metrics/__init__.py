"""What a study point computes and records: image quality (the shape metrics, FID), FLOPs, memory,
speed and run cost, and the paper's published numbers they are compared with."""
