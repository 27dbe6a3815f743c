import pytest

from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.search.grid import (
    expand_grid,
    load_grid,
    single_config_grid,
    with_baseline,
)
from foldwise.components.core.search.packing import plan_trials


def test_expands_like_sklearn_parameter_grid(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("hidden_units: [[64], [128, 64]]\nlearning_rate: [0.001, 0.01]\n"
                    "beta_1: [0.9]\n")
    configs = expand_grid(load_grid(path), "regression", None)
    assert [(c["params"]["hidden_units"], c["params"]["learning_rate"]) for c in configs] == [
        ([64], 0.001), ([64], 0.01), ([128, 64], 0.001), ([128, 64], 0.01)]
    assert len({c["config_id"] for c in configs}) == 4
    assert all(c["params"]["beta_1"] == 0.9 and c["params"]["epochs"] == 50 for c in configs)


def test_list_of_grids_allows_optimizer_specific_parameters():
    grid = [{"optimizer": ["adam"], "beta_1": [0.8, 0.9]},
            {"optimizer": ["sgd"], "momentum": [0.0, 0.9]}]
    configs = expand_grid(grid, "classification", 3)
    assert [c["params"]["optimizer"] for c in configs] == ["adam", "adam", "sgd", "sgd"]
    assert "momentum" not in configs[0]["params"] and configs[3]["params"]["momentum"] == 0.9


def test_duplicate_configurations_are_kept_once():
    configs = expand_grid([{"epochs": [5]}, {"epochs": [5], "batch_size": [32]}], "regression",
                          None)
    assert len(configs) == 1


def test_trials_pair_every_config_with_every_fold():
    configs = expand_grid({"epochs": [1, 2]}, "regression", None)
    trials = plan_trials(configs, [0, 1, 2])
    assert [([c["params"]["epochs"] for c in t["configs"]], t["folds"]) for t in trials] == [
        ([1], [0]), ([1], [1]), ([1], [2]), ([2], [0]), ([2], [1]), ([2], [2])]


def test_packed_plan_gives_each_config_one_task_with_all_folds():
    configs = expand_grid({"epochs": [1, 2]}, "regression", None)
    tasks = plan_trials(configs, [0.0, 1.0, 2.0], packing="folds")
    assert [([c["params"]["epochs"] for c in t["configs"]], t["folds"]) for t in tasks] == [
        ([1], [0, 1, 2]), ([2], [0, 1, 2])]
    with pytest.raises(FoldwiseError, match="unknown packing 'fold'.*did you mean 'folds'"):
        plan_trials(configs, [0, 1], packing="fold")


def test_configs_that_stack_share_tasks_and_others_train_alone():
    grid = [{"hidden_units": [[8], [16], [32]], "learning_rate": [0.1, 0.01]},
            {"hidden_units": [[8, 8]]}, {"estimator": ["sklearn_mlp"]}]
    configs = expand_grid(grid, "regression", None)
    tasks = plan_trials(configs, [0, 1], packing="configs")
    sizes = [[c["params"]["hidden_units"] for c in t["configs"]] for t in tasks]
    # the widest configurations apart: a pack trains at its widest member's widths
    assert sizes == [[[8], [8], [16], [16]], [[32], [32]], [[8, 8]], [[64, 32]]]
    assert all(t["folds"] == [0, 1] for t in tasks)
    assert tasks[-1]["configs"][0]["params"]["estimator"] == "sklearn_mlp"
    planned = [c["config_id"] for t in tasks for c in t["configs"]]
    assert sorted(planned) == sorted(c["config_id"] for c in configs)


def test_single_config_grid_round_trips():
    spec = {"hidden_units": [64, 32], "learning_rate": 0.01}
    (config,) = expand_grid(single_config_grid(spec), "regression", None)
    assert config["params"]["hidden_units"] == [64, 32]
    assert config["params"]["learning_rate"] == 0.01


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("lerning_rate: [0.1]", r"unknown grid parameter 'lerning_rate'; did you mean "
                                r"'learning_rate'"),
        ("learning_rate: 0.1", r"learning_rate must be a list of values to try, e.g. "
                               r"learning_rate: \[0.1\]"),
        ("epochs: []", r"epochs has an empty list"),
        ("hidden_units: [64, 32]", r"hidden_units values are lists of layer sizes"),
        ("- 3", r"each entry must be a mapping"),
        ("[]", r"must be a mapping of parameter"),
        ("learning_rate: [0.1, -1]", r'grid configuration \{"learning_rate": -1\}: '
                                     r"learning_rate must be in"),
        ("optimizer: [adam, sgd]\nmomentum: [0.9]",
         r'grid configuration \{"momentum": 0.9, "optimizer": "adam"\}: momentum does not '
         r"apply"),
        ("epochs: [10\n", r"not valid YAML"),
    ],
)
def test_bad_grids_are_refused_before_anything_runs(tmp_path, text, match):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    with pytest.raises(FoldwiseError, match=match):
        expand_grid(load_grid(path), "regression", None)


def test_missing_grid_file(tmp_path):
    with pytest.raises(FoldwiseError, match="grid file .* does not exist"):
        load_grid(tmp_path / "nope.yaml")


def test_baseline_adds_one_matching_sklearn_mlp_per_distinct_keras_config():
    configs = expand_grid({"hidden_units": [[8], [16]], "dropout": [0.0, 0.2],
                           "learning_rate": [0.01]}, "classification", 2)
    together = with_baseline(configs, "mlp", "classification", 2)
    twins = together[len(configs):]
    assert len(configs) == 4 and len(twins) == 2  # dropout has no MLP twin: deduplicated
    assert [t["params"]["hidden_units"] for t in twins] == [[8], [16]]
    assert all(t["params"]["estimator"] == "sklearn_mlp" and t["params"]["learning_rate"] == 0.01
               for t in twins)
    assert with_baseline(configs, "none", "classification", 2) == configs


def test_baseline_errors():
    configs = expand_grid({"activation": ["gelu"]}, "regression", None)
    with pytest.raises(FoldwiseError, match="--baseline mlp for cfg-.*no scikit-learn MLP"):
        with_baseline(configs, "mlp", "regression", None)
    with pytest.raises(FoldwiseError, match="--baseline must be one of none, mlp"):
        with_baseline(configs, "svm", "regression", None)
    with pytest.raises(FoldwiseError, match="at least one Keras configuration"):
        expand_grid({"estimator": ["sklearn_mlp"]}, "regression", None)


def test_parameter_grid_expands_in_scikit_learns_order():
    from sklearn.model_selection import ParameterGrid

    from foldwise.components.core.search.grid import parameter_grid

    part = {"learning_rate": [0.1, 0.01], "hidden_units": [[8], [4, 4]], "epochs": [3, 5, 7]}
    assert parameter_grid(part) == list(ParameterGrid(part))


def test_packed_tasks_are_cut_where_the_longest_task_is_shortest():
    from foldwise.components.core.training.step_costs import pack_step_units

    grid = [{"hidden_units": [[32, 32], [64, 64], [128, 128]], "learning_rate": [1e-3, 1e-2]}]
    configs = expand_grid(grid, "regression", None)
    tasks = plan_trials(configs, list(range(5)), packing="configs")
    widths = [[c["params"]["hidden_units"][0] for c in t["configs"]] for t in tasks]
    assert widths == [[32, 32, 64, 64], [128, 128]]
    specs = [c["params"] for c in configs]
    longest = max(pack_step_units(specs[:4], 5), pack_step_units(specs[4:], 5))
    for cut in (1, 2, 3, 5):  # every other cut leaves a longer task
        assert max(pack_step_units(specs[:cut], 5), pack_step_units(specs[cut:], 5)) > longest
    # the configurations keep their order (it breaks ties between equal scores)
    assert [c["config_id"] for t in tasks for c in t["configs"]] == [
        c["config_id"] for c in configs]


def test_the_cut_is_the_best_of_every_cut_and_linear_in_the_grid(monkeypatch):
    from foldwise.components.core.search.packing import best_cut
    from foldwise.components.core.training import step_costs
    from foldwise.components.core.training.step_costs import pack_step_units

    grid = [{"hidden_units": [[w, w] for w in (16, 256, 8, 8, 64, 32, 128)],
             "learning_rate": [1e-3, 1e-2]}]
    specs = [c["params"] for c in expand_grid(grid, "regression", None)]
    cut = best_cut(specs, 3)
    worst = [max(pack_step_units(specs[:c], 3), pack_step_units(specs[c:], 3))
             for c in range(1, len(specs))]
    assert worst[cut - 1] == min(worst)  # brute force agrees
    assert best_cut(specs[:1], 3) == 1 and best_cut([], 3) == 0
    wide = [{"hidden_units": [[w, w] for w in range(8, 1008)]}]  # 1,000 configurations
    many = expand_grid(wide, "regression", None)
    calls = []
    counted = step_costs.layer_macs
    monkeypatch.setattr(step_costs, "layer_macs",
                        lambda *a, **k: calls.append(1) or counted(*a, **k))
    tasks = plan_trials(many, list(range(5)), packing="configs")
    assert len(tasks) == 2 and len(calls) == 2 * len(many)  # each side's running cost, once


def test_longest_first_schedules_tasks_on_parallel_slots():
    from foldwise.components.core.search.costs import longest_first

    assert longest_first([5, 4, 3, 3, 3], 2) == 10  # longest first: 5+3 | 4+3+3
    assert longest_first([5, 4, 3, 3, 3], 5) == 5 and longest_first([5, 4], 1) == 9
    assert longest_first([], 3) == 0 and longest_first([1.0] * 10_000, 1_000) == 10


def test_numbers_without_a_dot_read_as_numbers_as_json_writes_them(tmp_path):
    """YAML 1.1 reads 1e-05 as text; a grid file reads it as JSON and YAML 1.2 do."""
    import json

    path = tmp_path / "grid.json"
    path.write_text(json.dumps({"learning_rate": [0.00001, 0.001], "l2": [1e-07]}))
    assert path.read_text().count("e-0") == 2  # how Python writes them
    (part,) = load_grid(path)
    assert part == {"learning_rate": [1e-05, 0.001], "l2": [1e-07]}
    (path := tmp_path / "grid.yaml").write_text("learning_rate: [1e-3, 3E-2]\nepochs: [1e2]\n"
                                                "activation: [relu]\n")
    assert load_grid(path) == [{"learning_rate": [0.001, 0.03], "epochs": [100.0],
                                "activation": ["relu"]}]
