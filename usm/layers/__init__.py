"""Building blocks shared by USM, ZigMa and DiT (one implementation of each)."""
