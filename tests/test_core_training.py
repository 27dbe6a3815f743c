import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from foldwise.components.core.data.fold_data import FoldData
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.models.spec import normalize_spec
from foldwise.components.core.scoring import metrics
from foldwise.components.core.training.fit import train_fold


def regression_data(seed=0, rows=80):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)).astype("float32")
    y = 1000.0 + 300.0 * x[:, 0] - 200.0 * x[:, 1]
    return FoldData(x[:60], y[:60], x[60:], y[60:], np.arange(60, rows))


def test_same_seed_same_predictions_different_seed_differs():
    spec = normalize_spec({"hidden_units": [8], "epochs": 3}, "regression")
    a = train_fold(regression_data(), task="regression", n_classes=None, spec=spec, seed=4)
    b = train_fold(regression_data(), task="regression", n_classes=None, spec=spec, seed=4)
    c = train_fold(regression_data(), task="regression", n_classes=None, spec=spec, seed=5)
    np.testing.assert_array_equal(a.prediction, b.prediction)
    assert not np.allclose(a.prediction, c.prediction)


def test_regression_target_is_standardized_per_fold_and_mapped_back():
    data = regression_data()
    spec = normalize_spec({"hidden_units": [16], "epochs": 60, "learning_rate": 0.01},
                          "regression")
    scaled = train_fold(data, task="regression", n_classes=None, spec=spec, seed=0)
    assert scaled.target_scaling["mean"] == pytest.approx(np.mean(data.y_train))
    assert scaled.target_scaling["scale"] == pytest.approx(np.std(data.y_train))
    assert scaled.scores["r2"] > 0.9  # predictions are on the original scale
    raw = train_fold(data, task="regression", n_classes=None,
                     spec={**spec, "target_scaling": "none"}, seed=0)
    assert raw.target_scaling is None and raw.scores["r2"] < scaled.scores["r2"]


def test_binary_and_multiclass_return_probabilities_per_class():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 2)).astype("float32")
    for n_classes in (2, 3):
        y = (np.digitize(x[:, 0], [-0.4, 0.4]) % n_classes).astype("int64")
        data = FoldData(x[:60], y[:60], x[60:], y[60:], np.arange(60, 90))
        spec = normalize_spec({"hidden_units": [8], "epochs": 2}, "classification", n_classes)
        out = train_fold(data, task="classification", n_classes=n_classes, spec=spec, seed=0)
        assert out.prediction.shape == (30, n_classes)
        np.testing.assert_allclose(out.prediction.sum(axis=1), 1.0, atol=1e-5)
        assert set(out.scores) == set(metrics.metric_names("classification", n_classes))


def test_early_stopping_stops_and_keeps_a_history():
    spec = normalize_spec({"hidden_units": [4], "epochs": 200, "early_stopping": True,
                           "patience": 2, "learning_rate": 0.05}, "regression")
    rng = np.random.default_rng(3)
    noise = FoldData(rng.normal(size=(60, 3)).astype("float32"), rng.normal(size=60),
                     rng.normal(size=(20, 3)).astype("float32"), rng.normal(size=20),
                     np.arange(20))
    out = train_fold(noise, task="regression", n_classes=None, spec=spec, seed=0)
    assert out.epochs_run < 200
    assert len(out.history["val_loss"]) == out.epochs_run


def test_scores_equal_sklearn_scorers():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, size=40)
    proba = rng.dirichlet([1, 1, 1], size=40)
    ours = metrics.score("classification", y, proba, 3)
    assert ours["accuracy"] == skm.accuracy_score(y, proba.argmax(1))
    assert ours["neg_log_loss"] == pytest.approx(-skm.log_loss(y, proba))
    assert ours["roc_auc_ovr"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert ours["f1_macro"] == pytest.approx(skm.f1_score(y, proba.argmax(1), average="macro"))
    true, pred = rng.normal(size=30), rng.normal(size=30)
    reg = metrics.score("regression", true, pred)
    assert reg["neg_root_mean_squared_error"] == pytest.approx(
        -skm.root_mean_squared_error(true, pred))
    assert reg["r2"] == pytest.approx(skm.r2_score(true, pred))


def test_auc_is_nan_when_a_fold_lacks_a_class():
    proba = np.array([[0.8, 0.2], [0.6, 0.4]])
    assert np.isnan(metrics.score("classification", np.array([0, 0]), proba, 2)["roc_auc"])


def test_training_does_not_mutate_fold_arrays():
    data = regression_data()
    copies = [a.copy() for a in (data.x_train, data.y_train, data.x_validation)]
    spec = normalize_spec({"hidden_units": [4], "epochs": 1}, "regression")
    train_fold(data, task="regression", n_classes=None, spec=spec, seed=0)
    for before, after in zip(copies, (data.x_train, data.y_train, data.x_validation), strict=True):
        np.testing.assert_array_equal(before, after)
    assert isinstance(pd.DataFrame(data.x_train), pd.DataFrame)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_sklearn_mlp_baseline_trains_matching_settings_and_saves_json(task, tmp_path):
    import json

    from foldwise.components.core.training.fit import save_model

    data = regression_data()
    n_classes = None
    if task == "classification":
        n_classes = 3
        labels = np.digitize(data.y_train, np.quantile(data.y_train, [0.33, 0.66]))
        data = FoldData(data.x_train, labels, data.x_validation,
                        np.digitize(data.y_validation, np.quantile(data.y_train, [0.33, 0.66])),
                        data.rows_validation)
    spec = normalize_spec({"estimator": "sklearn_mlp", "hidden_units": [8, 4], "epochs": 7,
                           "learning_rate": 0.01, "batch_size": 16}, task, n_classes)
    first = train_fold(data, task=task, n_classes=n_classes, spec=spec, seed=1)
    again = train_fold(data, task=task, n_classes=n_classes, spec=spec, seed=1)
    np.testing.assert_array_equal(first.prediction, again.prediction)
    mlp = first.model
    assert mlp.hidden_layer_sizes == (8, 4) and mlp.n_iter_ == 7 and mlp.batch_size == 16
    assert mlp.learning_rate_init == 0.01 and first.epochs_run == 7
    if task == "regression":
        assert first.target_scaling["mean"] == pytest.approx(np.mean(data.y_train))
        assert first.scores["r2"] > 0.5
    else:
        assert first.prediction.shape == (20, 3)
    save_model(first, str(tmp_path))
    weights = json.loads((tmp_path / "mlp.json").read_text())
    assert [np.shape(c) for c in weights["coefs"]][0] == (3, 8)
    assert not list(tmp_path.glob("*.pkl")) and not (tmp_path / "model.keras").exists()


@pytest.mark.parametrize(
    ("gpus", "tpu", "mixed", "expected"),
    [(0, False, False, {"device": "cpu", "strategy": "default", "precision": "float32"}),
     (1, False, False, {"device": "gpu", "strategy": "one_device", "precision": "float32"}),
     (4, False, True, {"device": "gpu", "strategy": "mirrored", "replicas": 4,
                       "precision": "mixed_float16"}),
     (0, True, True, {"device": "tpu", "strategy": "tpu", "precision": "mixed_bfloat16"}),
     (2, True, False, {"device": "tpu", "strategy": "tpu"})],
)
def test_strategy_follows_the_devices_found(gpus, tpu, mixed, expected):
    from foldwise.components.core.devices import tensorflow_placement

    plan = tensorflow_placement(gpus, tpu, mixed)
    assert {k: plan[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("platforms", "mixed", "expected"),
    [(["tpu"] * 4, True, {"device": "tpu", "strategy": "jax_data_parallel", "replicas": 4,
                          "precision": "mixed_bfloat16"}),
     (["gpu"], True, {"device": "gpu", "strategy": "jax_one_device", "precision":
                      "mixed_float16"}),
     (["cpu"], False, {"device": "cpu", "strategy": "jax_one_device", "replicas": 1})],
)
def test_under_the_jax_backend_the_plan_follows_jax_devices(platforms, mixed, expected):
    """The TPU image's path (Keras on JAX); verified here as a plan only: no JAX, no TPU."""
    from foldwise.components.core.devices import jax_placement

    plan = jax_placement(platforms, mixed)
    assert {k: plan[k] for k in expected} == expected


def test_training_records_its_devices_and_mixed_precision_trains_here():
    import keras

    spec = normalize_spec({"hidden_units": [8], "epochs": 2, "mixed_precision": True},
                          "regression")
    result = train_fold(regression_data(), task="regression", n_classes=None, spec=spec, seed=0)
    assert result.devices == {"device": "cpu", "strategy": "default", "replicas": 1,
                              "precision": "mixed_bfloat16"}
    assert result.model.layers[1].dtype_policy.name == "mixed_bfloat16"
    assert result.model.layers[-1].dtype_policy.name == "float32"  # stable output
    assert np.isfinite(result.prediction).all()
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards
    # Keras' fit records the validation fold's loss every epoch, as the packed trainers do
    assert len(result.history["test_loss"]) == len(result.history["loss"]) == 2
    assert np.isfinite(result.history["test_loss"]).all()


DIVERGING = {"hidden_units": [8], "epochs": 4, "optimizer": "sgd", "learning_rate": 1e6}


@pytest.mark.parametrize("mixed_precision", [False, True])  # packed trainer; Keras' own fit
def test_a_diverging_model_is_recorded_with_nan_scores_and_saved_as_it_ended(mixed_precision,
                                                                            tmp_path):
    from foldwise.components.core.training.fit import save_model

    spec = normalize_spec({**DIVERGING, "mixed_precision": mixed_precision}, "regression")
    result = train_fold(regression_data(), task="regression", n_classes=None, spec=spec, seed=0,
                        error_score=float("nan"))
    assert result.failed and result.fit_error.startswith("diverged: non-finite loss at epoch ")
    epoch = int(result.fit_error.rsplit(" ", 1)[1])
    # Training ends with the first non-finite epoch, the rest is not run.
    assert result.epochs_run == epoch == len(result.history["loss"]) < 4
    assert not np.isfinite(result.history["loss"][-1])
    assert set(result.scores) == set(metrics.metric_names("regression", None))
    assert all(np.isnan(v) for v in result.scores.values())
    save_model(result, str(tmp_path))
    assert (tmp_path / "fit_error.txt").read_text().strip() == result.fit_error
    assert (tmp_path / "model.keras").exists()
    with pytest.raises(FoldwiseError, match=r"training diverged \(non-finite loss at epoch "
                                            r"\d\): a smaller learning_rate"):
        train_fold(regression_data(), task="regression", n_classes=None, spec=spec, seed=0)


def test_a_training_error_is_recorded_or_raised_as_asked(tmp_path):
    from foldwise.components.core.training.fit import save_model

    data = regression_data()
    data.x_train[3, 1] = np.nan  # scikit-learn refuses missing values
    spec = normalize_spec({"estimator": "sklearn_mlp", "hidden_units": [4], "epochs": 2},
                          "regression")
    result = train_fold(data, task="regression", n_classes=None, spec=spec, seed=0,
                        error_score=float("nan"))
    assert result.fit_error.startswith("ValueError: Input X contains NaN")
    assert "\n" not in result.fit_error and result.model is None and result.history == {}
    assert result.prediction.shape == (20,) and np.isnan(result.prediction).all()
    assert np.isnan(result.scores["r2"]) and result.fit_time >= 0
    save_model(result, str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit_error.txt"]
    with pytest.raises(ValueError, match="Input X contains NaN"):
        train_fold(data, task="regression", n_classes=None, spec=spec, seed=0)
    with pytest.raises(ValueError, match="error_score must be 'raise' or a number"):
        train_fold(data, task="regression", n_classes=None, spec=spec, seed=0,
                   error_score="nan")
