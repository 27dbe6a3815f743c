"""KFP component: the nested cross-validation's answer, from the outer folds' scores."""

from typing import List

from kfp.dsl import HTML, Artifact, Input, Output

from foldwise.components.image import component


@component
def nested_aggregate(
    schema: Input[Artifact],
    chosen: Input[Artifact],
    fold_results: List[str],
    summary: Output[Artifact],
    page: Output[HTML],
) -> None:
    """Gather the outer scores: their mean and spread, the choices, the wins, the optimism.

    Args:
        schema: The preprocess step's schema.
        chosen: The nested_choose step's choices.
        fold_results: The URIs of the outer folds' train results.
        summary: JSON (``core.results.nested.run_summary``): ``metrics`` are the outer scores'
            mean and standard deviation; ``nested`` each outer fold's choice and scores.
        page: The report: the outer folds, what each chose, the wins and the optimism.
    """
    from foldwise.components import storage
    from foldwise.components.core.jsonio import class_count, read_json, write_json
    from foldwise.components.core.results.aggregate import package_versions, read_fold_results
    from foldwise.components.core.results.nested import page as nested_page
    from foldwise.components.core.results.nested import run_summary
    from foldwise.components.core.scoring.metrics import metric_names

    described = read_json(schema.path)
    picked = read_json(chosen.path)
    outer = read_fold_results([storage.read_bytes(uri).decode() for uri in fold_results])
    answer = run_summary(described, picked["choices"], outer,
                         list(metric_names(described["task"], class_count(described))),
                         picked["scoring"], package_versions(), picked["refit"])
    answer["nested"]["inner_search"] = picked.get("inner_search", "grid")
    write_json(summary.path, answer)
    with open(page.path, "w", encoding="utf-8") as handle:
        handle.write(nested_page(answer))
