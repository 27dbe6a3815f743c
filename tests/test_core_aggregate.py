import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.jsonio import dumps, write_json
from foldwise.components.core.results.aggregate import (
    aggregate_search,
    best_config_id,
    cv_results,
    read_fold_results,
    summary,
)


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
        "mean_score_time", "std_score_time", "n_parameters", "fit_error",
    ]
    a, b = table.iloc[0], table.iloc[1]
    assert a["mean_test_r2"] == pytest.approx(0.6)
    assert a["std_test_r2"] == pytest.approx(np.std([0.5, 0.7, 0.6]))
    assert (a["rank_test_r2"], b["rank_test_r2"]) == (2, 1)
    assert a["param_hidden_units"] == "[8]" and json.loads(b["params"])["lr"] == 0.01
    assert a["mean_fit_time"] == pytest.approx(2.0)
    assert table["fit_error"].tolist() == ["", ""]


def test_a_mapping_parameter_is_written_the_same_whatever_its_keys_order():
    """A builder's reference comes back from a pipeline parameter with its keys in any order
    (seen: a container's step and a subprocess step disagreeing); the table must not."""
    builder = {"function": "create_model", "file": "<notebook>", "sha256": "ab"}
    shuffled = {"sha256": "ab", "function": "create_model", "file": "<notebook>"}
    tables = [cv_results([result("a", 0, 0.5, {"builder": b, "lr": 0.1})], ["r2"])
              for b in (builder, shuffled)]
    assert tables[0]["param_builder"].tolist() == tables[1]["param_builder"].tolist()
    assert tables[0]["params"].tolist() == tables[1]["params"].tolist()


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


SCHEMA = {"task": "regression", "target": "y", "classes": None, "rows_in": 10, "rows_used": 10,
          "rows_dropped_missing_target": [], "numeric": ["x"], "categorical": [], "folds": 2,
          "fold_strategy": "kfold", "seed": 0}


def failed(cid, fold, error, params=None):
    """A fold whose training failed, as a train task reports it (null scores)."""
    return {**result(cid, fold, 0.0, params), "scores": {"r2": None,
                                                          "neg_mean_squared_error": None},
            "fit_error": error}


def test_a_failed_configuration_scores_nan_ranks_last_and_names_its_first_error():
    results = [failed("bad", 0, "diverged: non-finite loss at epoch 2"),
               failed("bad", 1, "diverged: non-finite loss at epoch 1"),
               result("ok", 0, 0.2), result("ok", 1, 0.4),
               result("half", 0, 0.9), failed("half", 1, "ValueError: boom")]
    table = cv_results(results, ["r2"]).set_index("config_id")
    assert table["fit_error"].to_dict() == {
        "bad": "diverged: non-finite loss at epoch 2", "ok": "", "half": "ValueError: boom"}
    assert np.isnan(table.loc["bad", ["split0_test_r2", "split1_test_r2", "mean_test_r2",
                                      "std_test_r2"]].astype(float)).all()
    # A fold that failed makes its configuration's mean NaN (scikit-learn does the same),
    # whatever its other folds scored.
    assert table.loc["half", "split0_test_r2"] == 0.9 and np.isnan(table.loc["half",
                                                                             "mean_test_r2"])
    assert table["rank_test_r2"].to_dict() == {"bad": 2, "ok": 1, "half": 2}
    out = summary(SCHEMA, table.reset_index(), ["r2"], "r2", {})
    assert out["best_config_id"] == "ok"
    assert out["failed_configs"] == [
        {"config_id": "bad", "fit_error": "diverged: non-finite loss at epoch 2"},
        {"config_id": "half", "fit_error": "ValueError: boom"}]


def test_a_failed_configuration_is_never_best_even_when_listed_first_among_nan_means():
    """A configuration whose mean is NaN without failing (a metric undefined) may still win."""
    results = [failed("bad", 0, "diverged: x"), result("undefined", 0, float("nan"))]
    table = cv_results(results, ["r2"])
    assert table["rank_test_r2"].tolist() == [1, 1]
    assert best_config_id(table, "r2") == "undefined"


def test_every_configuration_failing_raises_the_first_error():
    results = [failed("a", 0, "diverged: non-finite loss at epoch 3"),
               failed("b", 0, "ResourceExhaustedError: OOM")]
    table = cv_results(results, ["r2"])
    assert best_config_id(table, "r2") is None
    with pytest.raises(FoldwiseError, match=r"^every configuration failed to train \(2 of 2\); "
                                            r"the first, a: diverged: non-finite loss at epoch "
                                            r"3\. Change the grid"):
        summary(SCHEMA, table, ["r2"], "r2", {})


def test_baselines_do_not_save_a_search_whose_keras_configurations_all_failed():
    mlp = {"estimator": "sklearn_mlp"}
    table = cv_results([failed("k", 0, "diverged: y"), result("mlp", 0, 0.5, mlp)], ["r2"])
    with pytest.raises(FoldwiseError, match=r"every Keras configuration failed to train "
                                            r"\(1 of 1\); the first, k: diverged: y"):
        summary(SCHEMA, table, ["r2"], "r2", {})
    table = cv_results([result("k", 0, 0.1), failed("mlp", 0, "ValueError: z", mlp)], ["r2"])
    out = summary(SCHEMA, table, ["r2"], "r2", {})
    assert out["best_config_id"] == "k" and out["best_baseline"] is None
    assert out["failed_configs"] == [{"config_id": "mlp", "fit_error": "ValueError: z"}]


def test_fold_results_read_null_scores_as_nan():
    entries = [failed("a", 0, "diverged: q"), result("b", 0, 0.3)]  # b: without fit_error
    read = read_fold_results([json.dumps(entries[:1]), json.dumps(entries[1])])
    assert np.isnan(read[0]["scores"]["r2"]) and read[0]["fit_error"] == "diverged: q"
    assert read[1]["scores"]["r2"] == 0.3 and read[1]["fit_error"] == ""


def test_aggregate_search_reads_the_best_predictions_through_their_uris(tmp_path):
    def write(cid, fold, r2, folder, error=""):
        entry = failed(cid, fold, error) if error else result(cid, fold, r2)
        scores = {"neg_root_mean_squared_error": -0.5, "neg_mean_absolute_error": -0.25,
                  **entry["scores"]}
        if error:
            scores = dict.fromkeys(scores)
        return {**entry, "scores": scores, "predictions": str(folder / "predictions"),
                "history": str(folder / "history"),
                # as a pipeline parameter hands them back: in no particular order
                "searched": {"lr": 0.1, "hidden_units": [8]}}

    tasks = []
    for folder, cid, error in ((tmp_path / "t0", "bad", "diverged: non-finite loss at epoch 1"),
                               (tmp_path / "t1", "good", "")):
        folder.mkdir()
        pd.DataFrame({"config_id": cid, "row": [3, 1, 2, 0], "fold": [0, 0, 1, 1],
                      "y_true": [1.0, 2.0, 3.0, 4.0],
                      "prediction": [np.nan] * 4 if error else [1.5, 2.5, 3.5, 4.5]}
                     ).to_parquet(folder / "predictions")
        history = [float("nan")] if error else [1.0, 0.5]
        write_json(folder / "history", {cid: {  # validation-fold loss: lowest mean at epoch 1
            "0": {"loss": history, "test_loss": [0.8, 0.9][:len(history)]},
            "1": {"loss": history, "test_loss": [0.7, 0.75][:len(history)]}}})
        tasks.append(dumps([write(cid, k, 0.1 + k, folder, error) for k in (0, 1)]))
    read = []

    def read_bytes(uri):
        read.append(uri)
        return Path(uri).read_bytes()

    out = aggregate_search(SCHEMA, tasks, "", {"foldwise": "0"}, read_bytes)
    assert out.best_config["config_id"] == "good"
    assert list(out.best_params) == ["hidden_units", "lr"]  # sorted, as scikit-learn's
    assert sorted(read) == [str(tmp_path / "t1" / "history"),
                            str(tmp_path / "t1" / "predictions")]  # the best's files, once each
    assert out.oof_predictions["row"].tolist() == [0, 1, 2, 3]
    assert out.oof_predictions["prediction"].tolist() == [4.5, 2.5, 3.5, 1.5]
    assert out.best_histories == {"0": {"loss": [1.0, 0.5], "test_loss": [0.8, 0.9]},
                                  "1": {"loss": [1.0, 0.5], "test_loss": [0.7, 0.75]}}
    assert out.summary["best_epoch"] == 1
    assert out.best_config["params"] == result("good", 0, 0)["params"]  # its own epochs
    chosen = aggregate_search(SCHEMA, tasks, "", {"foldwise": "0"}, read_bytes,
                              refit_epochs="cv")
    assert chosen.best_config["params"]["epochs"] == 1 == chosen.summary["refit_epochs"]
    assert out.metrics == {"mean_test_r2": pytest.approx(0.6),
                           "mean_test_neg_mean_squared_error": pytest.approx(-0.4),
                           "mean_test_neg_root_mean_squared_error": -0.5,
                           "mean_test_neg_mean_absolute_error": -0.25}
    assert out.summary["failed_configs"][0]["config_id"] == "bad"
    assert out.confusion_matrix is None and out.roc_curve is None
    write_json(tmp_path / "summary.json", out.summary)
    assert "NaN" not in (tmp_path / "summary.json").read_text()
    assert cv_results(read_fold_results(tasks), ["r2"])["rank_test_r2"].tolist() == [2, 1]


def test_json_writing_turns_nan_and_inf_into_null(tmp_path):
    content = {"a": float("nan"), "b": [1.0, float("inf"), {"c": -float("inf")}], "d": "NaN"}
    write_json(tmp_path / "x.json", content)
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": [1.0, None,
                                                                              {"c": None}],
                                                             "d": "NaN"}
    assert dumps(content) == '{"a": null, "b": [1.0, null, {"c": null}], "d": "NaN"}'
