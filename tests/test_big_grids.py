"""Big searches: nothing that grows with the grid travels as a parameter.

A grid of 500 configurations runs end to end on kfp.local (30 configurations × 5 folds used
to fail after all the training, at the aggregate step, with "Argument list too long"), and
2,000 configurations × 5 folds plan without a step's parameters growing with them.
"""

import json
import time
import tracemalloc

import pandas as pd
import pytest
from kfp import dsl

from foldwise.components import plan_trials
from foldwise.components.core.search.grid import candidates
from foldwise.pipelines.cli import main


def test_two_thousand_configurations_plan_into_an_artifact(tmp_path, penguins):
    from foldwise.components.core.data.preprocess import PreprocessOptions, preprocess

    _, schema = preprocess(penguins, PreprocessOptions(target="species", folds=5))
    (tmp_path / "schema").write_text(json.dumps(schema))
    grid = [{"learning_rate": [round(0.0001 * (i + 1), 6) for i in range(1000)],
             "hidden_units": [[8], [8, 8]]}]
    plan = dsl.Artifact(uri=str(tmp_path / "plan"))
    tracemalloc.start()
    started = time.perf_counter()
    numbers = plan_trials.python_func(schema=dsl.Artifact(uri=str(tmp_path / "schema")),
                                      fold_ids=[0, 1, 2, 3, 4], plan=plan, param_grid=grid,
                                      model_spec={"epochs": 1}, packing="none")
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    tasks = json.loads((tmp_path / "plan").read_text())["tasks"]
    assert numbers == list(range(10_000)) and len(tasks) == 10_000
    assert len({c["config_id"] for t in tasks for c in t["configs"]}) == 2_000
    # What travels as parameters: the grid as given, and the loop's items (plain numbers).
    assert len(json.dumps(grid)) < 20_000 and len(json.dumps(numbers)) < 60_000
    print(f"planned 2,000 configurations x 5 folds in {seconds:.1f} s, peak {peak / 2**20:.0f} MB")
    assert candidates(grid, {"epochs": 1}, "classification", 3)[0]["config_id"] == \
        tasks[0]["configs"][0]["config_id"]


@pytest.mark.local
def test_a_grid_of_500_configurations_runs_end_to_end(tmp_path, penguins):
    data = tmp_path / "penguins.csv"
    penguins.sample(60, random_state=3).to_csv(data, index=False)
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({"learning_rate": [round(0.0005 * (i + 1), 6)
                                                  for i in range(250)],
                                "hidden_units": [[2], [3]]}))
    output = tmp_path / ("a-long-output-folder-name-" * 6)  # the old limit fell with length
    assert main(["run", "grid-search", "--data", str(data), "--target", "species",
                 "--grid", str(grid), "--folds", "2", "--epochs", "1", "--batch-size", "32",
                 "--output", str(output)]) == 0
    cv = pd.read_csv(output / "cv_results.csv")
    assert len(cv) == 500 and cv["mean_test_accuracy"].notna().all()
    assert sorted(cv["rank_test_accuracy"])[0] == 1
    assert (output / "manifest.json").exists() and (output / "model" / "model.keras").exists()
