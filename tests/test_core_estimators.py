"""The estimator registry: each entry fits, predicts user-facing values and saves its model."""

import json

import keras
import numpy as np
import pytest

from foldwise.components.core.data.fold_data import FoldData
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.models import estimators
from foldwise.components.core.models.estimators import (
    Estimator,
    Fitted,
    estimator_names,
    get_estimator,
    register,
    standard_target_scaling,
)
from foldwise.components.core.models.keras_model import output_kind
from foldwise.components.core.models.spec import ESTIMATORS, normalize_spec
from foldwise.components.core.training.fit import save_model, train_fold


def fold(task):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(70, 3)).astype("float32")
    y = 50.0 + 20.0 * x[:, 0] - 10.0 * x[:, 2]
    if task == "classification":
        y = np.digitize(x[:, 0], [-0.4, 0.4]).astype("int64")
    return FoldData(x[:50], y[:50], x[50:], y[50:], np.arange(50, 70))


def test_every_estimator_a_spec_may_name_is_registered():
    assert estimator_names() == list(ESTIMATORS) == ["keras", "sklearn_mlp", "keras_builder"]


@pytest.mark.parametrize("name", ["keras", "sklearn_mlp"])
@pytest.mark.parametrize(("task", "n_classes"), [("regression", None), ("classification", 3)])
def test_each_estimator_fits_predicts_and_saves(name, task, n_classes, tmp_path):
    data = fold(task)
    kind = output_kind(task, n_classes)
    spec = normalize_spec({"estimator": name, "hidden_units": [6], "epochs": 3,
                           "learning_rate": 0.01}, task, n_classes)
    estimator = get_estimator(name)
    state = estimator.target_scaling(data.y_train, kind, spec)
    fitted = estimator.fit(data, kind, n_classes, spec, 0, state, None)
    assert isinstance(fitted, Fitted) and len(fitted.history["loss"]) == 3
    predicted = estimator.predict(fitted.model, data.x_validation, kind, n_classes, state)
    if task == "regression":
        assert state["mean"] == pytest.approx(np.mean(data.y_train))
        assert predicted.shape == (20,)
        # Mapped back to the target's scale: around its mean, not around 0.
        assert abs(np.mean(predicted) - state["mean"]) < 3 * state["scale"]
    else:
        assert state is None and predicted.shape == (20, 3)
        np.testing.assert_allclose(predicted.sum(axis=1), 1.0, atol=1e-9)
    estimator.save(fitted.model, str(tmp_path))
    if name == "keras":
        loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
        np.testing.assert_allclose(
            estimators.keras_user_values(loaded.predict(data.x_validation, verbose=0), kind,
                                         state), predicted, rtol=1e-6)
    else:
        saved = json.loads((tmp_path / "mlp.json").read_text())
        hidden = np.maximum(data.x_validation @ np.array(saved["coefs"][0])
                            + saved["intercepts"][0], 0.0)
        out = hidden @ np.array(saved["coefs"][1]) + saved["intercepts"][1]
        if task == "regression":  # the saved weights are the model's: same predictions
            np.testing.assert_allclose(out[:, 0] * state["scale"] + state["mean"], predicted,
                                       rtol=1e-5)
        else:
            softmax = np.exp(out) / np.exp(out).sum(axis=1, keepdims=True)
            np.testing.assert_allclose(softmax, predicted, rtol=1e-5, atol=1e-7)


def test_a_classifier_fold_missing_a_class_still_predicts_every_class_column():
    data = fold("classification")
    keep = data.y_train != 2
    data = FoldData(data.x_train[keep], data.y_train[keep], data.x_validation,
                    data.y_validation, data.rows_validation)
    spec = normalize_spec({"estimator": "sklearn_mlp", "hidden_units": [4], "epochs": 2},
                          "classification", 3)
    result = train_fold(data, task="classification", n_classes=3, spec=spec, seed=0)
    assert result.prediction.shape == (20, 3) and np.all(result.prediction[:, 2] == 0.0)


def test_an_unknown_estimator_is_named_with_the_known_ones():
    with pytest.raises(FoldwiseError, match=r"unknown estimator 'sklearn-mlp'.*did you mean "
                                            r"'sklearn_mlp'.*known: keras, keras_builder, "
                                            r"sklearn_mlp"):
        get_estimator("sklearn-mlp")
    with pytest.raises(ValueError, match="'keras' is registered already"):
        register(Estimator("keras", *[get_estimator("keras").fit] * 3,
                           standard_target_scaling))


def _fit_mean(data, kind, n_classes, spec, seed, target_state, backup_dir):
    return Fitted({"mean": float(np.mean(data.y_train))}, {"loss": [0.0]}, 0.0,
                  {"device": "cpu"})


def _predict_mean(model, x, kind, n_classes, target_state):
    return np.full(len(x), model["mean"])


def _save_mean(model, folder):
    with open(f"{folder}/mean.json", "w", encoding="utf-8") as handle:
        json.dump(model, handle)


def test_one_registration_makes_a_new_estimator_trainable(tmp_path):
    """What the next estimator (a user's Keras builder) needs: register it, name it in a spec."""
    register(Estimator("predict_the_mean", _fit_mean, _predict_mean, _save_mean,
                       lambda y, kind, spec: None))
    try:
        data = fold("regression")
        spec = {**normalize_spec({}, "regression"), "estimator": "predict_the_mean"}
        result = train_fold(data, task="regression", n_classes=None, spec=spec, seed=0)
        assert result.estimator == "predict_the_mean" and not result.failed
        np.testing.assert_allclose(result.prediction, np.mean(data.y_train))
        assert result.scores["r2"] <= 0.0  # a constant predicts no better than the mean
        save_model(result, str(tmp_path))
        assert json.loads((tmp_path / "mean.json").read_text()) == result.model
    finally:
        estimators._REGISTRY.pop("predict_the_mean")


def test_no_code_outside_the_registry_branches_on_an_estimators_name():
    """Which kind of model a configuration holds is asked of its estimator's role."""
    import re
    from pathlib import Path

    import foldwise.components as components

    root = Path(components.__file__).resolve().parent
    names = "|".join(estimator_names())
    pattern = re.compile(rf"""[=!]=\s*["']({names})["']"""
                         rf"""|["']({names})["']\s*(==|!=|in\s+(?!sys\.modules))""")
    offenders = []
    for path in [*root.rglob("*.py"), *(root.parent / "pipelines").glob("*.py")]:
        if path.name in ("estimators.py", "options.py", "tensorflow_standin.py"):
            continue  # the registry, the option table; a module named keras
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_each_estimator_has_one_role_and_the_roles_are_the_ones_asked_for():
    from foldwise.components.core.models.estimators import get_estimator, keras_names, named

    assert named("mlp") == ("keras",) and named("user") == ("keras_builder",)
    assert named("baseline") == ("sklearn_mlp",)
    assert keras_names() == ("keras", "keras_builder")
    assert not get_estimator("sklearn_mlp").keras
