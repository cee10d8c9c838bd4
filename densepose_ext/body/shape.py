"""Random body shapes: the distribution of SMPL shape coefficients the renderer and the
stitcher draw people from."""
import numpy as np

from .template import NUM_BETAS

__all__ = ["BETA_STD", "BETA_RANGE", "sample_betas"]

BETA_STD = 0.9  # each coefficient ~ N(0, BETA_STD^2) ...
BETA_RANGE = 2.0  # ... clipped to [-BETA_RANGE, BETA_RANGE]


def sample_betas(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, NUM_BETAS) float64 shape coefficients, deterministic given the generator state."""
    return np.clip(rng.normal(0.0, BETA_STD, (n, NUM_BETAS)), -BETA_RANGE, BETA_RANGE)
