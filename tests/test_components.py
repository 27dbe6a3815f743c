"""Each component's Python function, called with real artifacts in a temporary folder."""

import json

import keras
import numpy as np
import pandas as pd
import pytest
from kfp import dsl

from foldwise.components import aggregate, one_hot_encode, preprocess, scale, train
from foldwise.components.core.columns import FOLD_COLUMN
from foldwise.components.core.scaling import fit_scaler


def artifact(kind, tmp_path, name):
    return kind(uri=str(tmp_path / name))


@pytest.fixture(scope="module")
def chain(tmp_path_factory, penguins):
    """preprocess → scale → one_hot_encode → train for fold 1 of 3 on a penguin sample."""
    tmp = tmp_path_factory.mktemp("components")
    sample = penguins.sample(90, random_state=0).reset_index(drop=True)
    data = tmp / "penguins.csv"
    sample.to_csv(data, index=False)
    out = {name: artifact(kind, tmp, name) for name, kind in [
        ("prepared", dsl.Dataset), ("schema", dsl.Artifact), ("fold_assignment", dsl.Dataset),
        ("scaled", dsl.Dataset), ("scaler_state", dsl.Artifact), ("encoded", dsl.Dataset),
        ("encoder_state", dsl.Artifact), ("model", dsl.Model), ("history", dsl.Artifact),
        ("predictions", dsl.Dataset), ("metrics", dsl.Metrics),
        ("classification_metrics", dsl.ClassificationMetrics),
    ]}
    fold_ids = preprocess.python_func(
        data=str(data), target="species", prepared=out["prepared"], schema=out["schema"],
        fold_assignment=out["fold_assignment"], folds=3, seed=5, drop=["year"])
    scale.python_func(prepared=out["prepared"], schema=out["schema"], fold=1,
                      scaled=out["scaled"], scaler_state=out["scaler_state"], scaler="robust")
    one_hot_encode.python_func(scaled=out["scaled"], schema=out["schema"], fold=1,
                               encoded=out["encoded"], encoder_state=out["encoder_state"])
    result = train.python_func(
        encoded=out["encoded"], schema=out["schema"], fold=1,
        model_spec={"hidden_units": [8.0], "epochs": 3.0}, seed=2, model=out["model"],
        history=out["history"], predictions=out["predictions"], metrics=out["metrics"],
        classification_metrics=out["classification_metrics"])
    return sample, out, fold_ids, json.loads(result)


def test_preprocess_writes_table_schema_and_fold_csv(chain):
    sample, out, fold_ids, _ = chain
    assert fold_ids == [0, 1, 2]
    schema = json.loads(open(out["schema"].path).read())
    assert schema["task"] == "classification" and "year" in schema["dropped_columns"]
    folds = pd.read_csv(out["fold_assignment"].path)
    assert list(folds.columns) == ["row", "fold"]
    assert folds["row"].tolist() == list(range(len(sample)))
    assert sorted(folds["fold"].unique()) == [0, 1, 2]
    assert len(pd.read_parquet(out["prepared"].path)) == len(sample)


def test_scale_fits_on_the_folds_training_rows_only(chain):
    _, out, _, _ = chain
    schema = json.loads(open(out["schema"].path).read())
    prepared = pd.read_parquet(out["prepared"].path)
    state = json.loads(open(out["scaler_state"].path).read())
    expected = fit_scaler(prepared[prepared[FOLD_COLUMN] != 1], schema["numeric"], "robust")
    assert state == {"fold": 1, **expected}


def test_one_hot_encode_state_and_columns(chain):
    _, out, _, _ = chain
    state = json.loads(open(out["encoder_state"].path).read())
    encoded = pd.read_parquet(out["encoded"].path)
    assert state["fold"] == 1 and set(state["columns"]) == {"island", "sex"}
    assert list(encoded.columns)[: len(state["features"])] == state["features"]
    assert list(encoded.columns)[len(state["features"]):] == ["species", "__row__", "__fold__"]


def test_train_writes_model_history_predictions_and_metrics(chain):
    _, out, _, result = chain
    folds = pd.read_csv(out["fold_assignment"].path)
    predictions = pd.read_parquet(out["predictions"].path)
    assert predictions["row"].tolist() == folds.loc[folds["fold"] == 1, "row"].tolist()
    assert list(predictions.columns) == ["row", "fold", "y_true", "proba_Adelie",
                                         "proba_Chinstrap", "proba_Gentoo"]
    assert result["fold"] == 1 and result["n_validation"] == len(predictions)
    assert result["params"]["hidden_units"] == [8] and result["params"]["epochs"] == 3
    assert len(json.loads(open(out["history"].path).read())["loss"]) == 3
    model = keras.saving.load_model(f"{out['model'].path}/model.keras", safe_mode=True)
    encoded = pd.read_parquet(out["encoded"].path)
    x = encoded[encoded["__fold__"] == 1].iloc[:, : model.input_shape[1]].to_numpy("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               predictions.iloc[:, 3:].to_numpy(), atol=1e-5)
    assert out["metrics"].metadata["accuracy"] == pytest.approx(result["scores"]["accuracy"])
    matrix = out["classification_metrics"].metadata["confusionMatrix"]
    assert sum(sum(row["row"]) for row in matrix["rows"]) == len(predictions)


def test_aggregate_writes_cv_results_and_summary(chain, tmp_path):
    _, out, _, result = chain
    results = [json.dumps({**result, "fold": k, "scores": {**result["scores"],
                                                           "accuracy": 0.5 + k / 10}})
               for k in range(3)]
    cv, summary, metrics = (artifact(dsl.Dataset, tmp_path, "cv"),
                            artifact(dsl.Artifact, tmp_path, "summary"),
                            artifact(dsl.Metrics, tmp_path, "metrics"))
    aggregate.python_func(schema=out["schema"], fold_results=results, cv_results=cv,
                          summary=summary, metrics=metrics)
    table = pd.read_csv(cv.path)
    assert table.loc[0, "split2_test_accuracy"] == pytest.approx(0.7)
    assert table.loc[0, "mean_test_accuracy"] == pytest.approx(0.6)
    described = json.loads(open(summary.path).read())
    assert described["scoring"] == "accuracy" and described["classes"][0] == "Adelie"
    assert set(described["versions"]) >= {"foldwise", "kfp", "tensorflow", "scikit-learn"}
    assert metrics.metadata["mean_test_accuracy"] == pytest.approx(0.6)
