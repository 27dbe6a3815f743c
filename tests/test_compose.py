"""foldwise's components compiled to YAML, loaded back, composed with a user's own step."""

import pytest
from kfp import components, dsl

from foldwise.pipelines.cli import main
from foldwise.pipelines.engine import run_local


@pytest.fixture(scope="module")
def component_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("components")
    assert main(["compile", "components", "--out", str(folder)]) == 0
    return folder


def test_every_component_compiles_to_a_loadable_yaml(component_files):
    names = sorted(p.stem for p in component_files.glob("*.yaml"))
    assert names == ["aggregate", "champion", "collect_folds", "export", "nested_aggregate",
                     "nested_choose", "nested_stage", "next_round",
                     "next_rung", "one_hot_encode", "one_hot_encode_folds", "plan_trials",
                     "preprocess", "promote", "refit", "report", "scale", "scale_folds",
                     "train"]
    for path in component_files.glob("*.yaml"):
        assert components.load_component_from_file(str(path)).name


def test_component_image_can_be_changed_for_all(tmp_path):
    assert main(["compile", "components", "--image", "reg/foldwise:9-gpu", "--out",
                 str(tmp_path)]) == 0
    assert "image: reg/foldwise:9-gpu" in (tmp_path / "train.yaml").read_text()


@pytest.mark.local
def test_a_workflow_of_loaded_components_and_an_own_step_runs_locally(component_files,
                                                                      tmp_path):
    load = {p.stem: components.load_component_from_file(str(p))
            for p in component_files.glob("*.yaml")}

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def gate(summary: dsl.Input[dsl.Artifact], minimum: float) -> str:
        """The user's own step: accept the model only above a minimum accuracy."""
        import json

        accuracy = json.load(open(summary.path))["metrics"]["accuracy"]["mean"]
        return "accepted" if accuracy >= minimum else "rejected"

    @dsl.pipeline
    def my_workflow(data: str, target: str) -> str:
        prepared = load["preprocess"](data=data, target=target, folds=2, seed=1)
        schema = prepared.outputs["schema"]
        with dsl.ParallelFor(items=prepared.outputs["Output"]) as fold:
            scaled = load["scale"](prepared=prepared.outputs["prepared"], schema=schema,
                                   fold=fold)
            encoded = load["one_hot_encode"](scaled=scaled.outputs["scaled"], schema=schema,
                                             fold=fold)
        fold_data = load["collect_folds"](encoded=dsl.Collected(encoded.outputs["encoded"]))
        trials = load["plan_trials"](schema=schema, fold_ids=prepared.outputs["Output"],
                                     model_spec={"hidden_units": [16], "epochs": 15,
                                                 "learning_rate": 0.01})
        with dsl.ParallelFor(items=trials.outputs["Output"]) as trial:
            trained = load["train"](fold_data=fold_data.outputs["fold_data"], schema=schema,
                                    plan=trials.outputs["plan"], trial=trial)
        results = load["aggregate"](schema=schema,
                                    fold_results=dsl.Collected(trained.outputs["Output"]))
        return gate(summary=results.outputs["summary"], minimum=0.9).output

    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "examples" / "penguins.csv"
    outputs = run_local(my_workflow, {"data": str(data), "target": "species"},
                        tmp_path / "pipeline", tmp_path / "pipeline.log")
    assert outputs["Output"] == "accepted"
    summaries = list((tmp_path / "pipeline").glob("*/aggregate/summary"))
    assert len(summaries) == 1 and len(list((tmp_path / "pipeline").glob(
        "*/for-loop-*-iteration-*/train/model/cfg-*/fold-*/model.keras"))) == 2
