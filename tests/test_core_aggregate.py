import json

import numpy as np
import pytest

from foldwise.components.core.aggregate import cv_results, summary
from foldwise.components.core.errors import FoldwiseError


def result(cid, fold, r2, params=None):
    params = {"estimator": "keras", **(params or {"hidden_units": [8], "lr": 0.1})}
    return {"config_id": cid, "params": params, "fold": fold,
            "scores": {"r2": r2, "neg_mean_squared_error": -1.0 + r2}, "fit_time": 1.0 + fold,
            "score_time": 0.1}


def test_cv_results_has_sklearn_columns_and_values():
    results = [result("a", k, v) for k, v in enumerate([0.5, 0.7, 0.6])]
    results += [result("b", k, v, {"hidden_units": [16], "lr": 0.01}) for k, v in
                enumerate([0.8, 0.9, 0.7])]
    table = cv_results(results, ["r2", "neg_mean_squared_error"])
    assert list(table.columns) == [
        "config_id", "params", "param_estimator", "param_hidden_units", "param_lr",
        "split0_test_r2", "split1_test_r2", "split2_test_r2", "mean_test_r2", "std_test_r2",
        "rank_test_r2", "split0_test_neg_mean_squared_error",
        "split1_test_neg_mean_squared_error", "split2_test_neg_mean_squared_error",
        "mean_test_neg_mean_squared_error", "std_test_neg_mean_squared_error",
        "rank_test_neg_mean_squared_error", "mean_fit_time", "std_fit_time",
        "mean_score_time", "std_score_time",
    ]
    a, b = table.iloc[0], table.iloc[1]
    assert a["mean_test_r2"] == pytest.approx(0.6)
    assert a["std_test_r2"] == pytest.approx(np.std([0.5, 0.7, 0.6]))
    assert (a["rank_test_r2"], b["rank_test_r2"]) == (2, 1)
    assert a["param_hidden_units"] == "[8]" and json.loads(b["params"])["lr"] == 0.01
    assert a["mean_fit_time"] == pytest.approx(2.0)


def test_rank_ties_share_the_best_rank_and_nan_ranks_last():
    results = [result(c, 0, v) for c, v in [("a", 0.5), ("b", 0.5), ("c", float("nan"))]]
    table = cv_results(results, ["r2"])
    assert table["rank_test_r2"].tolist() == [1, 1, 3]


def test_missing_or_duplicate_folds_are_refused():
    with pytest.raises(FoldwiseError, match="expected each of"):
        cv_results([result("a", 0, 0.1), result("a", 1, 0.2), result("b", 0, 0.3)], ["r2"])
    with pytest.raises(FoldwiseError, match="expected each of"):
        cv_results([result("a", 0, 0.1), result("a", 0, 0.2)], ["r2"])


def test_summary_reports_the_best_config():
    table = cv_results([result("a", 0, 0.2), result("b", 0, 0.4)], ["r2"])
    schema = {"task": "regression", "target": "y", "classes": None, "rows_in": 10,
              "rows_used": 9, "rows_dropped_missing_target": [4], "numeric": ["x"],
              "categorical": [], "folds": 1, "fold_strategy": "kfold", "seed": 0}
    out = summary(schema, table, ["r2"], "r2", {"foldwise": "0"})
    assert out["best_config_id"] == "b" and out["metrics"]["r2"]["mean"] == pytest.approx(0.4)
    assert out["rows_dropped"] == 1


def test_the_best_config_is_keras_even_when_a_baseline_scores_higher():
    table = cv_results([result("k", 0, 0.4), result("mlp", 0, 0.9, {"estimator": "sklearn_mlp"}),
                        result("k2", 0, 0.3)], ["r2"])
    schema = {"task": "regression", "target": "y", "classes": None, "rows_in": 10,
              "rows_used": 10, "rows_dropped_missing_target": [], "numeric": ["x"],
              "categorical": [], "folds": 1, "fold_strategy": "kfold", "seed": 0}
    out = summary(schema, table, ["r2"], "r2", {})
    assert out["best_config_id"] == "k"
    assert out["best_baseline"]["config_id"] == "mlp"
    assert out["best_baseline"]["mean"] == pytest.approx(0.9)
    assert table.set_index("config_id").loc["mlp", "rank_test_r2"] == 1
