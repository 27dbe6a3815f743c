"""Search kinds as one registry: every layer offers what is registered, and nothing else.

A toy kind, registered here and in no other file, runs through the command line on kfp.local.
"""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset

from foldwise.components.core import options
from foldwise.components.core.errors import FoldwiseError
from foldwise.pipelines import kinds
from foldwise.pipelines.cli import build_parser, main
from foldwise.pipelines.dags.cluster import LOCAL
from foldwise.pipelines.dags.search import publish_steps, run_values, search_steps

PACKAGE = Path(kinds.__file__).resolve().parent


def test_every_kind_builds_its_pipeline_and_takes_only_search_options():
    for name in kinds.names():
        kind = kinds.get(name)
        pipeline = kind.build(LOCAL)
        assert pipeline.name == f"foldwise-{name}"
        assert set(kind.options) <= set(options.names(options.SEARCH))
        inputs = pipeline.component_spec.inputs
        assert ("param_grid" in inputs) == (kinds.GRID in kind.candidates), name
        assert ("param_distributions" in inputs) == (kinds.SPACE in kind.candidates), name
        assert ("promote_to" in inputs) == kind.promotes, name


def test_an_unknown_kind_is_named_with_the_known_ones():
    with pytest.raises(FoldwiseError, match="unknown pipeline 'nope'; known: cross-validation"):
        kinds.get("nope")


def test_no_code_outside_the_registry_branches_on_a_kinds_name():
    """A kind's name is written in its entry and its DAG file only (the api names its class's)."""
    names = kinds.names()
    offenders = []
    for path in [*PACKAGE.glob("*.py"), *(PACKAGE.parent / "components").rglob("*.py")]:
        if path.name == "kinds.py" or path.stem.replace("_", "-") in names:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if any(f'"{name}"' in line or f"'{name}'" in line for name in names) \
                    and "_pipeline = " not in line:
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


# ----- a toy kind: every configuration of a grid cross-validated, no refit ------------------

def build_score_grid(settings=LOCAL):
    """Every configuration of a grid scored by K-fold cross-validation; results, no model."""
    from typing import NamedTuple

    outputs = NamedTuple("ScoreGridOutputs", cv_results=Dataset, summary=Artifact,
                         report=HTML, manifest=str)

    @dsl.pipeline(name="foldwise-score-grid", description="Score a grid; no refit.")
    def score_grid(data: str, target: str, param_grid: list, destination: str,
                   model_spec: dict = {},  # noqa: B006 - KFP reads defaults from the signature
                   task: str = "", categorical: list = [], numeric: list = [],  # noqa: B006
                   drop: list = [],  # noqa: B006
                   group_column: str = "", folds: int = 5, split: str = "kfold",
                   order_column: str = "", gap: int = 0, test_size: int = 0,
                   repeats: int = 1, seed: int = 0, scaler: str = "standard", scoring: str = "",
                   baseline: str = "none", objectives: str = "", importance: str = "on",
                   packing: str = "none") -> outputs:
        values = run_values(locals())
        prepared, results = search_steps(settings, values, param_grid, model_spec)
        _, page, published = publish_steps(settings, prepared, results, values, destination)
        return outputs(cv_results=results.outputs["cv_results"],
                       summary=results.outputs["summary"], report=page.outputs["page"],
                       manifest=published.output)

    return score_grid


@pytest.fixture
def score_grid():
    kind = kinds.register(kinds.Kind(
        "score-grid", "score every configuration of a grid, no refit",
        "Cross-validate every configuration of --grid; publish the ranking only.",
        build_score_grid, candidates=(kinds.GRID,), needs_candidates=True,
        exports_model=False,
        describe=lambda plan, destination: [f"scored   {len(plan.configs)} configurations"]))
    try:
        yield kind
    finally:
        kinds.unregister(kind.name)
    assert "score-grid" not in kinds.names()


def test_a_registered_kind_is_offered_by_the_command_line_with_its_own_options(score_grid):
    parser = build_parser()
    with pytest.raises(FoldwiseError, match="the following arguments are required: .*--grid"):
        parser.parse_args(["run", "score-grid", "--data", "x.csv", "--target", "y"])
    args = parser.parse_args(["run", "score-grid", "--data", "x.csv", "--target", "y",
                              "--grid", "g.yaml"])
    assert args.pipeline == "score-grid" and not hasattr(args, "refit")
    assert "score-grid" in parser.parse_args(["plan", "score-grid", "--data", "x",
                                              "--target", "y"]).pipeline


@pytest.mark.local
def test_a_toy_kind_registered_in_a_test_runs_on_kfp_local(score_grid, penguins, tmp_path,
                                                           capsys):
    data = tmp_path / "penguins.csv"
    penguins.sample(90, random_state=2).to_csv(data, index=False)
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({"learning_rate": [0.01, 0.003]}))
    output = tmp_path / "out"
    code = main(["run", "score-grid", "--data", str(data), "--target", "species", "--grid",
                 str(grid), "--folds", "2", "--epochs", "3", "--hidden-units", "4",
                 "--output", str(output)])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert "scored   2 configurations" in captured.err
    results = pd.read_csv(output / "cv_results.csv")
    assert len(results) == 2 and results["mean_test_accuracy"].notna().all()
    assert (output / "manifest.json").exists() and not (output / "model").exists()
    assert "foldwise predict" not in captured.out  # no model: nothing to predict with


def test_the_command_line_offers_exactly_the_registered_kinds():
    done = subprocess.run([str(Path(sys.executable).parent / "foldwise"), "run", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    for name in kinds.names():
        assert name in done.stdout and kinds.get(name).summary in " ".join(done.stdout.split())
