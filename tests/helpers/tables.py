"""Small generated tables the real runs share."""

import numpy as np
import pandas as pd


def regression_table(rows: int = 72, seed: int = 5) -> pd.DataFrame:
    """A number, a category that shifts the target, a noise column; two numbers missing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    colour = rng.choice(["red", "green", "blue"], size=rows)
    y = 20 + 8 * x + np.where(colour == "red", 6.0, 0.0) + rng.normal(scale=0.5, size=rows)
    x[[4, 9]] = np.nan
    return pd.DataFrame({"x": x, "colour": colour, "noise": rng.normal(size=rows), "y": y})
