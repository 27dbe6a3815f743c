"""The HTML report: self-contained, and rendered by a real headless Chromium without errors."""

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from foldwise.components.core.results.aggregate import cv_results, summary
from foldwise.components.core.results.report import build_report

CHROMIUM = shutil.which("chromium")


def schema(task):
    return {"target": "y", "task": task, "task_reason": "test", "rows_in": 40, "rows_used": 40,
            "rows_dropped_missing_target": [], "numeric": ["x"], "categorical": ["c"],
            "dropped_columns": [], "folds": 2, "fold_strategy": "kfold", "seed": 0,
            "classes": ["no", "yes", "maybe"] if task == "classification" else None}


def make_report(task):
    rng = np.random.default_rng(0)
    metric = "accuracy" if task == "classification" else "r2"
    results = [{"config_id": f"cfg-{c}", "params": {"estimator": "keras", "hidden_units": [c],
                                                     "learning_rate": 0.01, "optimizer": "adam"},
                "fold": k, "scores": {metric: 0.5 + c / 100 + k / 50}, "fit_time": 1.0,
                "score_time": 0.1} for c in (4, 16) for k in (0, 1)]
    table = cv_results(results, [metric])
    described = schema(task)
    summarized = summary(described, table, [metric], metric, {"foldwise": "0.1.0"})
    y = rng.integers(0, 3, 40)
    pooled = pd.DataFrame({"row": range(40), "fold": [0, 1] * 20, "y_true": y})
    if task == "classification":
        proba = rng.dirichlet([1, 1, 1], 40)
        for i, c in enumerate(described["classes"]):
            pooled[f"proba_{c}"] = proba[:, i]
    else:
        pooled["y_true"] = rng.normal(size=40)
        pooled["prediction"] = pooled["y_true"] + rng.normal(scale=.3, size=40)
    histories = {"0": {"loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.7, 0.6]},
                 "1": {"loss": [0.9, 0.4, 0.2]}}
    return build_report(described, table, summarized, pooled, histories)


def render(page, tmp_path):
    """Screenshot a page in headless Chromium; return (png bytes, console messages)."""
    path = tmp_path / "page.html"
    path.write_text(page, encoding="utf-8")
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
         "--log-level=0", "--window-size=1200,2400", f"--screenshot={shot}", path.as_uri()],
        capture_output=True, text=True, timeout=120)
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    return shot.read_bytes() if shot.exists() else b"", console


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_report_is_self_contained(task):
    page = make_report(task)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "@import" not in page
    assert not re.search(r"""url\(\s*["']?(?!#)""", page)  # only in-page SVG references
    assert page.count("<svg") == 4 and "cfg-16" in page and "Chosen configuration" in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run 'make setup'")
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_report_renders_in_headless_chromium_without_console_errors(task, tmp_path):
    png, console = render(make_report(task), tmp_path)
    assert console == []
    assert png.startswith(b"\x89PNG") and len(png) > 20_000  # charts drawn, not a blank page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run 'make setup'")
def test_the_console_check_does_catch_errors(tmp_path):
    _, console = render("<html><body><script>console.error('broken')</script></body></html>",
                        tmp_path)
    assert any("broken" in line for line in console)


def report_with_a_failed_config(tmp_path):
    """A regression report whose cfg-99 diverged, with cv_results read back from CSV."""
    results = [{"config_id": f"cfg-{c}", "params": {"estimator": "keras", "hidden_units": [c],
                                                     "learning_rate": lr, "optimizer": "sgd"},
                "fold": k, "scores": {"r2": 0.5 + c / 100 + k / 50}, "fit_time": 1.0,
                "score_time": 0.1, "fit_error": ""}
               for c, lr in ((4, 0.01), (16, 0.01)) for k in (0, 1)]
    results += [{"config_id": "cfg-99", "params": {"estimator": "keras", "hidden_units": [8],
                                                    "learning_rate": 1e6, "optimizer": "sgd"},
                 "fold": k, "scores": {"r2": None}, "fit_time": 0.2, "score_time": 0.0,
                 "fit_error": "diverged: non-finite loss at epoch 1"} for k in (0, 1)]
    table = cv_results(results, ["r2"])
    table.to_csv(tmp_path / "cv_results.csv", index=False)
    described = schema("regression")
    summarized = summary(described, table, ["r2"], "r2", {"foldwise": "0.1.0"})
    rng = np.random.default_rng(1)
    pooled = pd.DataFrame({"row": range(40), "fold": [0, 1] * 20, "y_true": rng.normal(size=40)})
    pooled["prediction"] = pooled["y_true"] + rng.normal(scale=.3, size=40)
    histories = {"0": {"loss": [1.0, 0.5]}, "1": {"loss": [0.9, 0.4]}}
    return build_report(described, pd.read_csv(tmp_path / "cv_results.csv"), summarized, pooled,
                        histories)


def test_report_marks_a_failed_configuration_and_leaves_it_out_of_the_score_chart(tmp_path):
    page = report_with_a_failed_config(tmp_path)
    assert "3 configurations (1 failed)" in page
    chart = page[page.index("<h2>Score per configuration</h2>"):page.index("<table>")]
    assert "cfg-16" in chart and "cfg-4" in chart and "cfg-99" not in chart
    assert "Not drawn: 1 configuration without a finite score" in chart
    rows = re.findall(r"<tr class='([^']*)'><td>(cfg-\d+)</td>(.*?)</tr>", page)
    assert [(classes, cid) for classes, cid, _ in rows] == [
        ("best", "cfg-16"), ("", "cfg-4"), ("failed", "cfg-99")]  # by rank: failed last
    assert "failed: diverged: non-finite loss at epoch 1" in rows[2][2]
    assert "nan" not in rows[2][2].lower().replace("non-finite", "")
    assert page.count("<svg") == 4


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run 'make setup'")
def test_report_with_a_failed_configuration_renders_without_console_errors(tmp_path):
    png, console = render(report_with_a_failed_config(tmp_path), tmp_path)
    assert console == []
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
