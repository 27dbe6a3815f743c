"""Permutation importance of raw columns on a fold's validation rows."""

import numpy as np
import pytest

from foldwise.components.core.data.fold_data import FoldData
from foldwise.components.core.training.importance import over_folds, permutation_importance


def fold(rows=400, seed=0):
    rng = np.random.default_rng(seed)
    signal, noise = rng.normal(size=rows), rng.normal(size=rows)
    color = np.eye(3)[rng.integers(0, 3, size=rows)]
    x = np.column_stack([signal, noise, color]).astype("float32")
    y = 3.0 * signal + np.where(color[:, 2] == 1, 1.0, 0.0)
    return FoldData(x, y, x, y, np.arange(rows), ["signal", "noise", "color=a", "color=b",
                                                  "color=c"],
                    {"signal": [0], "noise": [1], "color": [2, 3, 4]}, "y", None)


def test_the_column_the_model_reads_most_ranks_first_and_an_unread_one_near_zero():
    data = fold()
    seen = []

    def predict(x):
        seen.append(x[:, 2:].sum(axis=1))  # a category stays one category per row
        return (3.0 * x[:, 0] + np.where(x[:, 4] == 1, 1.0, 0.0))[:, None]

    drops = permutation_importance(predict, data, "regression", None, "r2", repeats=3)
    assert set(drops) == {"signal", "noise", "color"}
    assert drops["signal"] > 1.0 > drops["color"] > 0.01
    assert drops["noise"] == pytest.approx(0.0, abs=1e-9)
    assert all(np.all(s == 1.0) for s in seen)
    assert len(seen) == 1 + 3 * 3  # the unshuffled rows, then each column's repeats


def test_importance_over_folds_is_ordered_with_its_spread():
    found = over_folds({0: {"a": 0.1, "b": 0.5}, 1: {"a": 0.3, "b": 0.7}})
    assert [c["column"] for c in found] == ["b", "a"]
    assert found[0]["mean"] == pytest.approx(0.6) and found[0]["std"] == pytest.approx(0.1)
    assert found[1]["folds"] == {"0": 0.1, "1": 0.3}


@pytest.mark.local
def test_a_column_that_carries_the_target_ranks_first(tmp_path, penguins, capsys):
    """On kfp.local: the planted column first, each fold's drop in the summary and report."""
    import json

    from foldwise.pipelines.cli import main

    table = penguins.dropna(subset=["body_mass_g"]).sample(150, random_state=2)
    rng = np.random.default_rng(3)
    table["scale_reading"] = table["body_mass_g"] + rng.normal(0, 40, len(table))
    table.to_csv(tmp_path / "planted.csv", index=False)
    code = main(["run", "cross-validation", "--data", str(tmp_path / "planted.csv"),
                 "--target", "body_mass_g", "--folds", "3", "--epochs", "8",
                 "--output", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0
    found = json.loads((tmp_path / "run" / "summary.json").read_text())["permutation_importance"]
    columns = found["columns"]
    assert columns[0]["column"] == "scale_reading" and found["scoring"] == "r2"
    assert columns[0]["mean"] > columns[1]["mean"] + columns[1]["std"] > 0
    assert {c["column"] for c in columns} == {
        "species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "sex",
        "year", "scale_reading"}  # raw columns: a category's indicators count as one
    assert sorted(columns[0]["folds"]) == ["0", "1", "2"]
    assert "relies   on scale_reading" in out
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Which columns it relies on</h2>" in page
    residuals = page[page.index("Residuals against the columns it relies on most</h2>"):]
    residuals = residuals[:residuals.index("<h2>")]
    assert residuals.count("<svg") == 5  # the five most important columns, each drawn
    assert ">scale_reading<" in residuals or "scale_reading</text>" in residuals
