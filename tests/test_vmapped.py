"""training.vmapped: any Keras model, packed with jax.vmap, equals lone runs and Keras' own fit.

The engine needs Keras' JAX backend, which is chosen once per process: the checks run in a
process of their own (tests/helpers/vmapped_checks.py) and these tests read what it measured.
"""

import pytest
from helpers.checks import measured

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    return measured("vmapped_checks.py", tmp_path_factory.mktemp("vmapped"))


def test_the_checks_ran_under_jax(checks):
    assert checks["backend"] == "jax"


@pytest.mark.parametrize("case", ["plain", "dropout_custom", "batchnorm"])
def test_packed_models_equal_lone_runs(checks, case):
    result = checks[case]
    assert result["outputs"] < TOLERANCE and result["losses"] < TOLERANCE


def test_folds_of_other_lengths_and_learning_rates_pack_together(checks):
    assert checks["plain"]["packed"] == [3, 3, 3]  # rows 100, 99, 101; two learning rates


@pytest.mark.parametrize("case", ["batchnorm", "dropout_custom"])
def test_batch_dependent_layers_pack_only_with_members_of_as_many_rows(checks, case):
    # A padded last batch would change batch statistics (and a custom layer might compute
    # some): the members of 100 rows pack, the one of 99 trains alone.
    rows = {"batchnorm": [100, 100, 99], "dropout_custom": [100, 99, 100]}[case]
    assert checks[case]["packed"] == [2 if n == 100 else 1 for n in rows]


def test_a_diverging_member_leaves_its_mates_as_they_would_be_alone(checks):
    result = checks["diverging"]
    assert result["packed"] == [3, 3, 3]
    assert result["each"][0] < TOLERANCE and result["each"][2] < TOLERANCE
    histories = result["histories"]
    assert all(v == v for v in histories[0]["loss"] + histories[2]["loss"])  # finite mates
    last = histories[1]["loss"][-1]
    assert last != last or abs(last) == float("inf")  # it ends at its non-finite epoch


def test_early_stopping_per_member_as_keras_does(checks):
    result = checks["early_stopping"]
    assert result["outputs"] < TOLERANCE
    for history in result["histories"]:
        assert len(history["val_loss"]) == len(history["loss"]) < 30


@pytest.mark.parametrize("case", ["plain_99", "drop_99", "bn_99", "bn-drop_96"])
def test_training_equals_keras_fit_on_the_same_row_order(checks, case):
    result = checks[f"keras_fit_{case}"]
    assert result["outputs"] < TOLERANCE and result["losses"] < TOLERANCE
    # the validation fold's loss after every epoch, as Keras' evaluate gives it
    assert result["test_losses"] < TOLERANCE


def test_dense_networks_of_other_widths_share_one_padded_program(checks):
    result = checks["widths"]
    assert result["packed"] == [2, 2] and result["program"] == ["padded", "padded"]
    assert result["outputs"] < TOLERANCE


def test_with_dropout_other_widths_train_apart(checks):
    assert checks["dropout_widths"] == [1, 1]


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(checks):
    assert checks["resume"]["from"] == [2, 2]
    assert checks["resume"]["outputs"] < TOLERANCE
