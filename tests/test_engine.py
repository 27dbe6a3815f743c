"""The one engine trains foldwise's MLP and users' builders: packed equals lone equals Keras.

The engine runs under Keras' JAX backend, chosen once per process: the checks run in a
process of their own that keeps TensorFlow out, as a train task does
(tests/helpers/engine_checks.py), and these tests read what it measured.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers.checks import measured

from foldwise.components.core.models.spec import normalize_spec
from foldwise.components.core.training.vmapped import pack_key, pack_split

CASES = ["regression_adam_default", "regression_sgd_default", "binary_adamw_default",
         "multiclass_rmsprop_default", "regression_sgd_huber"]


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    return measured("engine_checks.py", tmp_path_factory.mktemp("engine"))


def test_the_checks_ran_under_jax_without_tensorflow(checks):
    assert checks["backend"] == "jax"
    assert checks["tensorflow_imported"] is False


@pytest.mark.parametrize("case", CASES)
def test_one_epoch_of_mlps_of_other_widths_equals_keras_fit_of_each(checks, case):
    """Widths 8/6/5, input widths 5/4/5, L2 0.01/0/0.03, 100/97/90 rows: one program."""
    result = checks[f"epoch_{case}"]
    assert result["packed"] == [3, 3, 3] and result["program"] == "padded"
    assert result["weights"] < 1e-6 and result["losses"] < 1e-5


def test_folds_pack_across_widths_rates_l2_and_dropout_and_equal_lone_runs(checks):
    result = checks["folds"]
    assert result["packed"] == [2, 2, 2, 2]  # without dropout: widths; with: dropout rates
    assert result["predictions"] < 1e-4 and result["histories"] < 1e-5


def test_a_diverging_member_is_recorded_and_its_mates_train_as_alone(checks):
    result = checks["diverging_regression"]
    assert result["packed"] == [3, 3, 3]
    assert result["mates"] < 1e-5
    assert checks["error_pattern_ok"] and result["scores_nan"]
    assert result["epochs_run"] == len(result["losses"])


def test_a_member_continued_from_its_state_ends_as_a_run_of_every_epoch(checks):
    result = checks["continued"]
    assert result["continued_from"] == [2, 2] and result["epochs"] == [5, 5]
    assert result["outputs"] < 1e-6 and result["histories"] < 1e-6
    assert "made from other data" in result["wrong"]


def test_a_resumed_checkpoint_ends_where_an_uninterrupted_run_does(checks):
    assert checks["resumed"]["from"] == [2, 2]
    assert checks["resumed"]["outputs"] < 1e-6


def test_folds_with_fewer_rows_than_a_batch_train_as_keras_fit_does(checks):
    assert checks["short"]["packed"] == [2, 2] and checks["short"]["outputs"] < 1e-6


def test_mixed_precision_trains_in_the_engine(checks):
    result = checks["mixed_precision"]
    assert result["devices"]["precision"] == "mixed_bfloat16"
    assert result["devices"]["strategy"] == "jax.vmap" and result["devices"]["packed"] == 2
    assert result["dtype"] == "bfloat16" and result["finite"]


def test_a_tf_keras_builder_trains_packed_and_a_tf_operation_is_found_by_trying(checks):
    result = checks["tensorflow_builders"]
    assert [d["strategy"] for d in result["devices"]] == ["jax.vmap"] * 4
    # Dropout rates are data; a Dropout at rate 0 is no layer, so then widths are data too.
    assert [d["packed"] for d in result["devices"]] == [2, 2, 2, 2]
    assert result["errors"] == [""] * 4 and result["alone"] < 1e-5
    assert result["needs"] == {"uses-tf": "tf.reduce_mean"}


def test_what_splits_a_pack_is_named():
    base = normalize_spec({"hidden_units": [64, 32]}, "regression")
    assert pack_key({**base, "learning_rate": 0.1, "l2": 0.01}) == pack_key(base)
    assert pack_key({**base, "hidden_units": [3, 5]}) == pack_key(base)  # widths are data
    assert pack_split(base, {**base, "hidden_units": [3]}) == ["depth"]
    with_dropout = {**base, "dropout": 0.2}
    assert pack_split(base, with_dropout) == ["dropout on/off"]
    assert pack_key({**with_dropout, "dropout": 0.4}) == pack_key(with_dropout)
    assert pack_split(with_dropout, {**with_dropout, "hidden_units": [8, 8]}) == [
        "widths (with dropout)"]
    assert pack_split(base, {**base, "optimizer": "sgd"})[0] == "optimizer"
    assert pack_key(normalize_spec({"estimator": "sklearn_mlp"}, "regression")) is None
    assert pack_key({**base, "mixed_precision": True}) != pack_key(base)


SHARDED = """
import json
from foldwise.components.core.training.vmapped import select_backend
select_backend()
import jax
import numpy as np
from foldwise.components.core.models.spec import normalize_spec
from foldwise.components.core.data.fold_data import FoldData
from foldwise.components.core.training.fit import train_folds

rng = np.random.default_rng(0)
x = rng.normal(size=(90, 4)).astype("float32")
y = x[:, 0] - 2 * x[:, 1]
data = FoldData(x[:70], y[:70], x[70:], y[70:], np.arange(70, 90))
specs = [normalize_spec({"hidden_units": units, "epochs": 3, "batch_size": 16}, "regression")
         for units in ([8, 4], [6, 4])]
pair = train_folds([data, data], task="regression", n_classes=None, specs=specs, seeds=[1, 2])
lone = [train_folds([data], task="regression", n_classes=None, specs=[s], seeds=[k])[0]
        for s, k in zip(specs, [1, 2])]
print(json.dumps({"devices": len(jax.devices()),
                  "spread": [r.devices.get("spread", "") for r in pair + lone],
                  "predictions": [r.prediction.tolist() for r in pair + lone]}))
"""


def _sharded(devices: int) -> dict:
    import os

    environment = {**os.environ, "KERAS_BACKEND": "jax",
                   "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    done = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True,
                          timeout=600, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_pack_spreads_by_member_and_one_model_by_batch_rows_and_trains_as_on_one_device():
    """Two CPU devices stand in for two GPUs.

    A pack of two: each device trains one member. One model alone: each device takes half
    of every batch's rows, the gradients summed across them (data parallelism). Both end
    where one device ends.
    """
    two, one = _sharded(2), _sharded(1)
    assert two["devices"] == 2 and one["devices"] == 1
    assert two["spread"] == ["members", "members", "batch", "batch"]
    assert one["spread"] == ["", "", "", ""]
    for spread, alone in zip(two["predictions"], one["predictions"], strict=True):
        assert np.max(np.abs(np.subtract(spread, alone))) < 1e-5


def test_a_padded_group_is_cut_where_separate_programs_cost_less():
    """Narrow members pad to the widest only while that costs less than a program apart."""
    from types import SimpleNamespace

    from foldwise.components.core.training.vmapped import _by_width

    def chain(units, features=26):
        return SimpleNamespace(units=[units, units, 1], features=features)

    members = [SimpleNamespace(spec={"batch_size": 32})] * 15
    wide = {i: chain((32, 64, 128)[i // 5]) for i in range(15)}
    assert _by_width(members, list(range(15)), wide) == [
        list(range(5)), list(range(5, 10)), list(range(10, 15))]
    tiny = {i: chain((4, 6, 8)[i // 5], 5) for i in range(15)}  # the fixed part dominates
    assert _by_width(members, list(range(15)), tiny) == [list(range(15))]


CHUNKED = """
import json
from foldwise.components.core.training.vmapped import select_backend
select_backend()
import numpy as np
from foldwise.components.core.training import vmapped
from foldwise.components.core.models.spec import normalize_spec
from foldwise.components.core.data.fold_data import FoldData
from foldwise.components.core.training.fit import train_folds

rng = np.random.default_rng(0)
x = rng.normal(size=(400, 4)).astype("float32")
y = x[:, 0] - 2 * x[:, 1] + rng.normal(size=400).astype("float32")
datas = [FoldData(x[:300], y[:300], x[300:], y[300:], np.arange(300, 400)),
         FoldData(x[100:], y[100:], x[:97], y[:97], np.arange(97))]
specs = [normalize_spec({"hidden_units": [8], "epochs": 3, "early_stopping": True,
                         "validation_fraction": 0.3, "l2": 0.01}, "regression")] * 2
out = {}
for rows in (100000, 16):
    vmapped.EVALUATE_ROWS = rows
    done = train_folds(datas, task="regression", n_classes=None, specs=specs, seeds=[1, 1])
    out[rows] = [{k: d.history[k] for k in ("test_loss", "val_loss")} for d in done]
print(json.dumps(out))
"""


def test_held_out_losses_computed_a_chunk_at_a_time_equal_one_pass():
    """Validation and early-stopping losses over rows in chunks (memory) equal one pass."""
    import os

    done = subprocess.run([sys.executable, "-c", CHUNKED], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for whole, chunked in zip(out["100000"], out["16"], strict=True):
        for name in ("test_loss", "val_loss"):
            assert len(whole[name]) == 3
            assert chunked[name] == pytest.approx(whole[name], rel=1e-5)
