"""KFP component: validate the table, infer roles and task, encode labels, assign folds."""

from kfp.dsl import Artifact, Dataset, Output

from foldwise.components.image import component


@component
def preprocess(
    data: str,
    target: str,
    prepared: Output[Dataset],
    schema: Output[Artifact],
    fold_assignment: Output[Dataset],
    task: str = "",
    categorical: list = [],  # noqa: B006 - KFP reads defaults from the signature
    numeric: list = [],  # noqa: B006
    drop: list = [],  # noqa: B006
    group_column: str = "",
    folds: int = 5,
    split: str = "kfold",
    order_column: str = "",
    gap: int = 0,
    test_size: int = 0,
    repeats: int = 1,
    seed: int = 0,
    outer_folds: int = 0,
) -> list:
    """Read the table at ``data`` and write it typed, with a fold per row, plus its schema.

    Args:
        data: Path or ``gs://`` URI of a CSV or Parquet table.
        target: Column to predict.
        prepared: Parquet table: features, encoded target, ``__row__`` and ``__fold__``.
        schema: JSON description of columns, task, classes, folds and dropped rows.
        fold_assignment: CSV with columns ``row`` (0-based position in the input) and ``fold``
            (and each fold's role of each row, under repeated or time-ordered folds).
        task: ``classification``, ``regression`` or empty to infer it.
        categorical: Columns to one-hot encode whatever their type.
        numeric: Columns to treat as numbers.
        drop: Columns to leave out.
        group_column: Rows sharing this column's value share a fold; empty for none.
        folds: Number of folds (per repetition).
        split: ``kfold`` or ``time`` (time-ordered folds).
        order_column: ``time``: the column of times; empty for the table's row order.
        gap: ``time``: rows left out between a fold's training rows and its validation block.
        test_size: ``time``: rows per validation block; 0 for ``rows // (folds + 1)``.
        repeats: K-fold repeated this many times, reshuffled each time.
        seed: Seed of the fold assignment.
        outer_folds: Nested cross-validation: this many outer folds, each split into
            ``folds`` inner folds of its training rows (0: not nested).

    Returns:
        The fold ids ``[0, ..., folds * repeats - 1]``, the items of the pipeline's fold loop.
        Nested: the inner folds only (``schema["nested"]`` numbers them and the outer folds).
        (A plain return value, not a named output: kfp.local cannot loop over named outputs.)
    """
    from foldwise.components import storage
    from foldwise.components.core.data.folds import assignment_frame
    from foldwise.components.core.data.preprocess import preprocess as run_preprocess
    from foldwise.components.core.data.preprocess import preprocess_options
    from foldwise.components.core.data.table import file_sha256, read_table
    from foldwise.components.core.jsonio import write_json

    options = preprocess_options({"target": target, "task": task, "categorical": categorical,
                                  "numeric": numeric, "drop": drop,
                                  "group_column": group_column, "folds": folds, "split": split,
                                  "order_column": order_column, "gap": gap,
                                  "test_size": test_size, "repeats": repeats, "seed": seed,
                                  "outer_folds": outer_folds})
    with storage.local_copy(data) as local_data:
        table, described = run_preprocess(read_table(local_data), options)
        described["data"] = {"uri": data, "sha256": file_sha256(local_data)}
    table.to_parquet(prepared.path, index=False)
    write_json(schema.path, described)
    assignment_frame(table).to_csv(fold_assignment.path, index=False)
    prepared.metadata.update(rows=len(table), task=described["task"])
    if described.get("nested"):
        return [fold for inner in described["nested"]["inner"] for fold in inner]
    return list(range(int(described["folds"])))
