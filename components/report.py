"""KFP component: the search's report as one self-contained HTML page."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Output

from foldwise.components.image import component


@component
def report(
    schema: Input[Artifact],
    cv_results: Input[Dataset],
    summary: Input[Artifact],
    oof_predictions: Input[Dataset],
    best_histories: Input[Artifact],
    page: Output[HTML],
    prepared: Input[Dataset] = None,
):
    """Draw scores per configuration, learning curves and out-of-fold diagnostics.

    Args:
        schema: The preprocess step's schema.
        cv_results: The aggregate step's ``cv_results``.
        summary: The aggregate step's summary.
        oof_predictions: The best configuration's pooled out-of-fold predictions.
        best_histories: The best configuration's per-fold loss histories.
        page: ``report.html``: inline SVG and CSS, no scripts; the KFP UI shows it.
        prepared: The preprocessed table: a regression's residuals are drawn against the raw
            columns the best configuration relies on most.
    """
    import pandas as pd

    from foldwise.components.core.jsonio import read_json
    from foldwise.components.core.results.report import build_report

    described = read_json(summary.path)
    wanted = [c["column"] for c in (described.get("permutation_importance") or {}).get(
        "columns", [])[:5]]
    raw = None
    if prepared is not None and wanted:
        from foldwise.components.core.columns import ROW_COLUMN

        raw = pd.read_parquet(prepared.path, columns=[ROW_COLUMN, *wanted])
    text = build_report(read_json(schema.path), pd.read_csv(cv_results.path), described,
                        pd.read_parquet(oof_predictions.path), read_json(best_histories.path),
                        raw)
    with open(page.path, "w", encoding="utf-8") as handle:
        handle.write(text)
