import os
import sys
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
# foldwise is imported from its installation, never from the source tree's root: there the
# repository's docker/ folder would pass for the `docker` module that kfp.local probes for.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
PENGUINS = ROOT / "examples" / "penguins.csv"


@pytest.fixture(scope="session")
def penguins() -> pd.DataFrame:
    return pd.read_csv(PENGUINS)


@pytest.fixture
def small_table() -> pd.DataFrame:
    """12 rows, two classes, a numeric column with a gap and a categorical one with a gap."""
    return pd.DataFrame({
        "size": [1.0, 2.0, None, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0],
        "colour": ["red", "blue", "red", None, "green", "blue", "red", "blue", "green", "red",
                   "blue", "green"],
        "label": ["a", "b", "a", "b", "a", "b", "a", "b", "a", "b", "a", "b"],
    })
