"""Model-based search's optimizer: Optuna's TPE, asked and told through a study of plain data."""

import json
import math

import pytest

from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.search import bayes, sampling

SPACE = {"learning_rate": {"loguniform": [1e-4, 1e-1]}, "units": {"randint": [8, 257]},
         "dropout": {"uniform": [0.0, 0.5]}, "activation": ["relu", "tanh", "gelu"]}


def score(point: dict) -> float:
    """A smooth landscape with one best region (lr 10^-2.5, 100 units, dropout 0.1, gelu)."""
    return -((math.log10(point["learning_rate"]) + 2.5) ** 2 + ((point["units"] - 100) / 60) ** 2
             + ((point["dropout"] - 0.1) * 4) ** 2 + (0.0 if point["activation"] == "gelu"
                                                       else 0.5))


def search(seed: int, rounds: int = 6, batch: int = 6) -> dict:
    study = bayes.new_study(SPACE, seed)
    for round_ in range(rounds):
        bayes.ask(study, batch, round_)
        for trial in study["trials"]:
            if trial["state"] is None:
                bayes.tell(study, trial["number"], score(trial["params"]))
        study = json.loads(json.dumps(study))  # what travels between stages: plain JSON
    return study


def test_the_optimizer_learns_where_random_search_does_not():
    """Same budget (36 configurations in rounds of 6), five seeds: better than sampling."""
    ours, theirs, wins = [], [], 0
    for seed in range(5):
        study = search(seed)
        ours.append(bayes.best(study)["value"])
        theirs.append(max(score(p) for p in sampling.sample([SPACE], 36, seed)))
        wins += ours[-1] > theirs[-1]
        first = [t["value"] for t in study["trials"] if t["round"] == 0]
        last = [t["value"] for t in study["trials"] if t["round"] == 5]
        assert sum(last) / len(last) > sum(first) / len(first)  # it moved toward the best
    assert sum(ours) / 5 > sum(theirs) / 5 + 0.1 and wins >= 3, (ours, theirs)


def test_a_study_asks_the_same_batch_wherever_it_is_rebuilt():
    study = search(7, rounds=2)
    again = json.loads(json.dumps(study))
    assert bayes.ask(study, 4, 2) == bayes.ask(again, 4, 2)
    assert [t["state"] for t in study["trials"][-4:]] == [None] * 4  # pending until told
    points = [json.dumps(t["params"], sort_keys=True) for t in study["trials"]]
    assert len(set(points)) == len(points)  # nothing asked twice


def test_a_small_list_space_is_asked_without_repeats_until_it_runs_out():
    study = bayes.new_study({"width": [8, 16, 32], "depth": [1, 2]}, seed=0)
    asked = bayes.ask(study, 6, 0)
    assert sorted(json.dumps(p, sort_keys=True) for p in asked) == sorted(
        json.dumps({"depth": d, "width": w}, sort_keys=True) for d in (1, 2)
        for w in (8, 16, 32))


def test_a_conditional_parameter_exists_only_where_its_condition_holds():
    space = {"layers": [1, 2, 3], "hidden_units": [[16], [64, 32]],
             "dropout": {"uniform": [0.0, 0.5], "when": {"layers": [2, 3]}},
             "momentum": {"choice": [0.0, 0.9], "when": {"layers": 3}}}
    study = bayes.new_study(space, seed=1)
    for round_ in range(3):
        for point in bayes.ask(study, 8, round_):
            assert ("dropout" in point) == (point["layers"] > 1), point
            assert ("momentum" in point) == (point["layers"] == 3), point
            assert point["hidden_units"] in ([16], [64, 32])
        for trial in study["trials"]:
            if trial["state"] is None:
                bayes.tell(study, trial["number"], trial["params"].get("dropout", 0.0))
    assert {t["params"]["layers"] for t in study["trials"]} == {1, 2, 3}


@pytest.mark.parametrize(("space", "match"), [
    ({"dropout": {"uniform": [0, 0.5], "when": {"layers": [2]}}, "layers": [1, 2]},
     r"dropout: when names 'layers', which is not a parameter listed before dropout"),
    ({"layers": [1, 2], "dropout": {"uniform": [0, 0.5], "when": {"layers": [4]}}},
     r"dropout: layers never takes \[4\]"),
    ({"lr": {"loguniform": [1e-4, 1e-1]}, "x": {"uniform": [0, 1], "when": {"lr": [0.01]}}},
     r"x: when needs 'lr' to be a list of values"),
    ({"layers": [1, 2], "dropout": {"uniform": [0, 0.5], "when": [2]}},
     r"dropout: when must map earlier parameters"),
    ([{"a": [1]}, {"b": [2]}], r"must be one mapping .* \(a list of spaces is for random "
                               r"search\)"),
    ({"lr": {"loguniform": [0, 1]}}, r"loguniform needs 0 < low < high"),
])
def test_a_bad_space_is_refused_by_name(space, match):
    with pytest.raises(FoldwiseError, match=match):
        bayes.new_study(space, seed=0)


def test_a_raced_configuration_is_never_taken_for_a_finished_score():
    """A pruned trial's partial score informs the sampler as pruned, never as the best."""
    study = bayes.new_study(SPACE, seed=2)
    bayes.ask(study, 3, 0)
    bayes.tell(study, 0, -1.0)
    bayes.tell(study, 1, 5.0, state=bayes.PRUNED)  # scored high on the folds it saw
    bayes.tell(study, 2, float("nan"))  # a diverged configuration
    assert bayes.best(study)["number"] == 0
    assert [t["state"] for t in study["trials"]] == ["finished", "pruned", "failed"]
    rebuilt = bayes._rebuilt(study, bayes.parameters(SPACE), 1)
    states = [t.state.name for t in rebuilt.trials]
    assert states == ["COMPLETE", "PRUNED", "FAIL"]
    assert rebuilt.trials[1].intermediate_values == {0: 5.0} and rebuilt.trials[1].value is None
    assert rebuilt.best_trial.number == 0
    with pytest.raises(FoldwiseError, match="finished, pruned or failed"):
        bayes.tell(study, 0, 1.0, state="done")
    with pytest.raises(FoldwiseError, match="no trial 9"):
        bayes.tell(study, 9, 1.0)
