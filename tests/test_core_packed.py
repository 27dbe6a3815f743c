"""Packed training: K stacked sub-models are the K models separate runs produce."""

import re

import keras
import numpy as np
import pytest

from foldwise.components.core.model import build_model, normalize_spec
from foldwise.components.core.packed import Stream, epoch_order, fit_packed, pack_key
from foldwise.components.core.training import FoldData, seed_everything, train_fold, train_folds

RNG = np.random.default_rng(0)


def table(rows, kind, features=5):
    x = RNG.normal(size=(rows, features)).astype("float32")
    if kind == "regression":
        y = (2.0 * x[:, :1] - x[:, 1:2] + 0.1).astype("float32")
    elif kind == "binary":
        y = (x[:, :1] > 0).astype("float32")
    else:
        y = keras.utils.to_categorical(np.digitize(x[:, 0], [-0.4, 0.4]), 3).astype("float32")
    return x, y


CASES = [  # (kind, task, classes, optimizer settings)
    ("regression", "regression", None, {"optimizer": "adam"}),
    ("regression", "regression", None, {"optimizer": "sgd", "momentum": 0.9}),
    ("binary", "classification", 2, {"optimizer": "adamw"}),
    ("multiclass", "classification", 3, {"optimizer": "rmsprop", "momentum": 0.5}),
    ("regression", "regression", None, {"optimizer": "sgd", "loss": "huber"}),
]


@pytest.mark.parametrize(("kind", "task", "classes", "settings"), CASES)
def test_one_packed_epoch_equals_keras_fit_of_each_sub_model(kind, task, classes, settings):
    """Sizes 100/97/90 at batch 16 give 7, 7 and 6 steps: the third skips a step."""
    spec = normalize_spec({"hidden_units": [8, 4], "epochs": 1, "batch_size": 16, "l2": 0.01,
                           **settings}, task, classes)
    streams = [Stream(x, y, None, None, 3, spec) for x, y in
               (table(rows, kind) for rows in (100, 97, 90))]
    packed = fit_packed(streams, task=task, n_classes=classes)
    for k, stream in enumerate(streams):
        seed_everything(3)
        model = build_model(spec, 5, task, classes)
        order = epoch_order(3, 0, len(stream.x_fit))
        y = stream.y_fit[order]
        history = model.fit(stream.x_fit[order], y if kind == "multiclass" else y[:, 0],
                            epochs=1, batch_size=16, shuffle=False, verbose=0)
        for ours, keras_own in zip(packed.models[k].get_weights(), model.get_weights(),
                                   strict=True):
            np.testing.assert_allclose(ours, keras_own, atol=1e-6)
        assert packed.histories[k]["loss"][0] == pytest.approx(history.history["loss"][0],
                                                               rel=1e-5)


def test_packed_sub_models_equal_separate_runs_with_dropout_and_early_stopping():
    """Different rows, layer widths, learning rates, stopping epochs and input widths."""
    specs = [normalize_spec({"hidden_units": [units], "epochs": 12, "batch_size": 8,
                             "dropout": 0.2, "early_stopping": True, "patience": 2,
                             "learning_rate": lr}, "regression")
             for units, lr in ((16, 0.05), (9, 0.01), (16, 0.003))]
    streams = []
    for spec, rows, width in zip(specs, (60, 57, 64), (5, 5, 4), strict=True):
        x, y = table(rows, "regression", features=width)
        streams.append(Stream(x[:48], y[:48], x[48:], y[48:], 7, spec))
    packed = fit_packed(streams, task="regression", n_classes=None)
    alone = [fit_packed([s], task="regression", n_classes=None) for s in streams]
    assert len({len(h["loss"]) for h in packed.histories}) > 1  # they stopped at different epochs
    for k, single in enumerate(alone):
        for name, values in single.histories[0].items():
            assert packed.histories[k][name] == pytest.approx(values, rel=1e-5)
        for ours, theirs in zip(packed.models[k].get_weights(), single.models[0].get_weights(),
                                strict=True):
            np.testing.assert_allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("activation", ["sigmoid", "softplus"])  # nonzero at 0: masks matter
def test_configurations_of_different_widths_pack_as_separate_runs(activation):
    specs = [normalize_spec({"hidden_units": units, "epochs": 3, "batch_size": 16,
                             "activation": activation, "l2": 0.001}, "classification", 3)
             for units in ([8, 4], [3, 6], [8, 6])]
    streams = [Stream(*table(70, "multiclass"), None, None, 5, spec) for spec in specs]
    packed = fit_packed(streams, task="classification", n_classes=3)
    for k, stream in enumerate(streams):
        (alone,) = fit_packed([stream], task="classification", n_classes=3).models
        mine = packed.models[k].get_weights()
        assert [w.shape for w in mine] == [w.shape for w in alone.get_weights()]
        for ours, theirs in zip(mine, alone.get_weights(), strict=True):
            np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_a_resumed_run_ends_with_the_uninterrupted_model(tmp_path):
    spec = normalize_spec({"hidden_units": [8], "epochs": 6, "batch_size": 16,
                           "dropout": 0.1}, "regression")
    x, y = table(80, "regression")
    stream = Stream(x, y, None, None, 1, spec)
    whole = fit_packed([stream], task="regression", n_classes=None)
    first = fit_packed([Stream(x, y, None, None, 1, {**spec, "epochs": 3})], task="regression",
                       n_classes=None, checkpoint_dir=str(tmp_path))
    assert first.resumed_from_epoch == 0 and (tmp_path / "checkpoint.npz").exists()
    resumed = fit_packed([stream], task="regression", n_classes=None,
                         checkpoint_dir=str(tmp_path))
    assert resumed.resumed_from_epoch == 3
    assert resumed.histories == whole.histories
    for ours, theirs in zip(resumed.models[0].get_weights(), whole.models[0].get_weights(),
                            strict=True):
        np.testing.assert_array_equal(ours, theirs)
    other = fit_packed([Stream(x, y, None, None, 2, spec)], task="regression", n_classes=None,
                       checkpoint_dir=str(tmp_path))
    assert other.resumed_from_epoch == 0  # another seed's checkpoint is not resumed


@pytest.mark.parametrize("settings", [{"optimizer": "adam", "dropout": 0.1},
                                      {"optimizer": "rmsprop", "momentum": 0.5}])
def test_a_survivor_continued_in_another_pack_ends_as_a_run_of_the_whole_budget(tmp_path,
                                                                             settings):
    from foldwise.components.core.packed import load_state, save_state

    # Three members of different widths train 2 epochs; two of them go on to 5 epochs in a
    # pack of their own (the widest gone), from their saved states.
    specs = [normalize_spec({"hidden_units": [units], "epochs": 5, "batch_size": 16,
                             **settings}, "regression") for units in (4, 9, 6)]
    data = [table(rows, "regression") for rows in (70, 64, 75)]
    streams = [Stream(x, y, None, None, 3 + k, spec)
               for k, ((x, y), spec) in enumerate(zip(data, specs, strict=True))]
    short = [Stream(s.x_fit, s.y_fit, None, None, s.seed, {**s.spec, "epochs": 2})
             for s in streams]
    first = fit_packed(short, task="regression", n_classes=None, keep_state=True)
    assert [state["epochs"] for state in first.states] == [2, 2, 2]
    for k, state in enumerate(first.states):
        save_state(state, str(tmp_path / f"state-{k}.npz"))
    survivors = [0, 2]
    continued = fit_packed([streams[k] for k in survivors], task="regression", n_classes=None,
                           initial=[load_state(str(tmp_path / f"state-{k}.npz"))
                                    for k in survivors])
    whole = fit_packed([streams[k] for k in survivors], task="regression", n_classes=None)
    for ours, theirs in zip(continued.histories, whole.histories, strict=True):
        assert ours.keys() == theirs.keys()  # packs of other widths: equal to float rounding
        np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=1e-6)
    for ours, theirs in zip(continued.models, whole.models, strict=True):
        for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="other data, seed or model options"):
        fit_packed([streams[1]], task="regression", n_classes=None,
                   initial=[load_state(str(tmp_path / "state-0.npz"))])


@pytest.mark.parametrize("settings", [{"l2": 0.01}, {"dropout": 0.2, "optimizer": "sgd"}])
def test_every_epoch_records_the_validation_folds_loss_as_keras_evaluates_it(settings):
    specs = [normalize_spec({"hidden_units": [units], "epochs": 4, "batch_size": 16,
                             **settings}, "classification", 3) for units in (5, 8)]
    streams = []
    for k, spec in enumerate(specs):
        x, y = table(90, "multiclass")
        streams.append(Stream(x[:70], y[:70], None, None, k, spec, x[70:], y[70:]))
    packed = fit_packed(streams, task="classification", n_classes=3)
    for stream, model, history in zip(streams, packed.models, packed.histories, strict=True):
        assert len(history["test_loss"]) == len(history["loss"]) == 4
        evaluated = model.evaluate(stream.x_test, stream.y_test, verbose=0)
        loss = evaluated[0] if isinstance(evaluated, list) else evaluated
        assert history["test_loss"][-1] == pytest.approx(loss, rel=1e-4)


def test_train_folds_packs_and_returns_what_each_fold_alone_returns():
    folds = []
    for rows in (70, 66, 73):
        x, y = table(rows, "regression", features=3)
        folds.append(FoldData(x[:50], 100 + 10 * y[:50, 0], x[50:], 100 + 10 * y[50:, 0],
                              np.arange(50, rows)))
    spec = normalize_spec({"hidden_units": [8], "epochs": 4}, "regression")
    together = train_folds(folds, task="regression", n_classes=None, specs=[spec] * 3,
                           seeds=[0] * 3)
    for fold, packed in zip(folds, together, strict=True):
        alone = train_fold(fold, task="regression", n_classes=None, spec=spec, seed=0)
        np.testing.assert_allclose(packed.prediction, alone.prediction, rtol=1e-5)
        assert packed.devices["packed"] == 3 and alone.devices["packed"] == 1


def test_what_cannot_be_packed_is_named():
    base = normalize_spec({}, "regression")
    assert pack_key(base) is not None
    assert pack_key({**base, "mixed_precision": True}) is None
    assert pack_key({**base, "loss": "my_losses:pinball"}) is None
    assert pack_key(normalize_spec({"estimator": "sklearn_mlp"}, "regression")) is None
    assert pack_key({**base, "learning_rate": 0.1}) == pack_key(base)
    assert pack_key({**base, "hidden_units": [3, 5]}) == pack_key(base)  # widths are padded
    assert pack_key({**base, "hidden_units": [3]}) != pack_key(base)  # depths are not
    with pytest.raises(ValueError, match="cannot share a pack"):
        fit_packed([Stream(*table(10, "regression"), None, None, 0, base),
                    Stream(*table(10, "regression"), None, None, 0,
                           {**base, "hidden_units": [3]})], task="regression", n_classes=None)


@pytest.mark.parametrize(("kind", "task", "classes"), [("regression", "regression", None),
                                                       ("multiclass", "classification", 3)])
def test_a_diverging_member_cannot_poison_its_pack_mates(kind, task, classes):
    """sgd at learning rate 1e6 gives NaN at once; the mates are trained as if alone.

    The mates differ in width and input width from the diverging member (padding and unit
    masks are in play) and one stops early (its weights are held while the others train).
    """
    diverging = normalize_spec({"hidden_units": [6, 4], "epochs": 5, "batch_size": 16,
                                "optimizer": "sgd", "learning_rate": 1e6, "dropout": 0.1},
                               task, classes)
    healthy = [normalize_spec({"hidden_units": units, "epochs": 5, "batch_size": 16,
                               "optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.5,
                               **stop}, task, classes)
               for units, stop in (([8, 4], {}), ([3, 5], {"early_stopping": True,
                                                         "patience": 1}))]
    streams = []
    for spec, rows, width, seed in zip([healthy[0], diverging, healthy[1]], (70, 64, 75),
                                       (5, 4, 5), (1, 2, 3), strict=True):
        x, y = table(rows, kind, features=width)
        stop = 60 if spec["early_stopping"] else rows
        streams.append(Stream(x[:stop], y[:stop], x[stop:] if stop < rows else None,
                              y[stop:] if stop < rows else None, seed, spec))
    rows = [s.x_fit for s in streams]
    packed = fit_packed(streams, task=task, n_classes=classes, predict=rows)
    losses = packed.histories[1]["loss"]  # it ends with its first non-finite epoch
    assert len(losses) < 5 and np.isfinite(losses[:-1]).all() and not np.isfinite(losses[-1])
    for k in (0, 2):
        alone = fit_packed([streams[k]], task=task, n_classes=classes, predict=[rows[k]])
        assert packed.histories[k].keys() == alone.histories[0].keys()
        for name, values in alone.histories[0].items():
            assert packed.histories[k][name] == pytest.approx(values, rel=1e-6)
            assert np.isfinite(values).all()
        for ours, theirs in zip(packed.models[k].get_weights(), alone.models[0].get_weights(),
                                strict=True):
            np.testing.assert_allclose(ours, theirs, atol=1e-6)
        np.testing.assert_allclose(packed.outputs[k], alone.outputs[0], atol=1e-6)


def regression_folds(sizes=(70, 66)):
    folds = []
    for rows in sizes:
        x, y = table(rows, "regression", features=3)
        folds.append(FoldData(x[:50], 100 + 10 * y[:50, 0], x[50:], 100 + 10 * y[50:, 0],
                              np.arange(50, rows)))
    return folds


def test_train_folds_records_a_diverging_pack_member_and_scores_the_others_as_alone():
    healthy = normalize_spec({"hidden_units": [8], "epochs": 4, "optimizer": "sgd",
                              "learning_rate": 0.01}, "regression")
    diverging = {**healthy, "learning_rate": 1e6}
    folds = regression_folds()
    together = train_folds(folds * 2, task="regression", n_classes=None,
                           specs=[healthy, healthy, diverging, diverging], seeds=[0] * 4,
                           error_score=float("nan"))
    assert {r.devices["packed"] for r in together} == {4}  # one pack
    for data, result in zip(folds, together[:2], strict=True):
        alone = train_fold(data, task="regression", n_classes=None, spec=healthy, seed=0)
        assert not result.failed and result.fit_error == ""
        np.testing.assert_allclose(result.prediction, alone.prediction, rtol=1e-5)
        assert result.scores == pytest.approx(alone.scores, rel=1e-5)
    for result in together[2:]:
        assert re.fullmatch(r"diverged: non-finite loss at epoch [1-4]", result.fit_error)
        epoch = int(result.fit_error.rsplit(" ", 1)[1])
        assert result.epochs_run == len(result.history["loss"]) == epoch  # ends where it diverged
        assert not np.isfinite(result.history["loss"][-1])
        assert all(np.isnan(v) for v in result.scores.values())
        assert result.model is not None  # kept as it ended, to be saved and inspected


def test_a_pack_that_raises_is_trained_member_by_member(tmp_path):
    """A fold whose labels do not fit the classes makes the whole pack raise."""
    spec = normalize_spec({"hidden_units": [8], "epochs": 3}, "classification", 3)
    x, y = table(60, "multiclass", features=4)
    labels = y.argmax(axis=1)
    good = FoldData(x[:45], labels[:45], x[45:], labels[45:], np.arange(45, 60))
    bad = FoldData(x[:45], np.where(labels[:45] == 2, 5, labels[:45]), x[45:], labels[45:],
                   np.arange(45, 60))
    results = train_folds([good, bad], task="classification", n_classes=3, specs=[spec] * 2,
                          seeds=[1, 1], checkpoint_dir=str(tmp_path), error_score=float("nan"))
    alone = train_fold(good, task="classification", n_classes=3, spec=spec, seed=1)
    np.testing.assert_allclose(results[0].prediction, alone.prediction, atol=1e-6)
    assert not results[0].failed and results[0].devices["packed"] == 1
    assert results[1].fit_error.startswith("IndexError: index 5 is out of bounds")
    assert results[1].model is None and np.isnan(results[1].scores["accuracy"])
    with pytest.raises(IndexError, match="index 5 is out of bounds"):
        train_folds([good, bad], task="classification", n_classes=3, specs=[spec] * 2,
                    seeds=[1, 1])
