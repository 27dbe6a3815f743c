"""Validate a table, infer column roles and the task, encode labels and assign folds.

Nothing here is fitted on feature values: imputation, scaling and one-hot categories are
fitted later, per fold, on that fold's training rows only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

from foldwise.components.core import options
from foldwise.components.core.columns import FOLD_COLUMN, RESERVED_COLUMNS, ROW_COLUMN
from foldwise.components.core.data.folds import (
    SPLIT_PREFIX,
    TRAIN,
    UNUSED,
    VALIDATION,
    first_of,
    order_positions,
    repeated_roles,
    role_columns,
    time_roles,
    time_split_sizes,
)
from foldwise.components.core.data.table import suggest
from foldwise.components.core.errors import FoldwiseError

TASKS = options.choices("task")
SPLITS = options.choices("split")
# A numeric target with at most this many distinct integer values is taken for class labels.
MAX_INFERRED_INTEGER_CLASSES = 10


@dataclass(frozen=True)
class PreprocessOptions:
    """What the user said about the table.

    Attributes:
        target: Name of the column to predict.
        task: ``"classification"``, ``"regression"`` or ``None`` to infer it from the target.
        categorical: Columns to one-hot encode whatever their type.
        numeric: Columns to treat as numbers whatever their type.
        drop: Columns to leave out.
        group_column: Rows sharing a value of this column always land in the same fold.
        folds: Number of folds (at least 2); per repetition with ``repeats``.
        split: ``kfold`` (shuffled, stratified or grouped K-fold) or ``time`` (time-ordered
            folds, :mod:`~foldwise.components.core.data.folds`).
        order_column: ``time``: the column that orders the rows (``None``: the table's order).
        gap: ``time``: rows left out between a fold's training rows and its validation block.
        test_size: ``time``: rows per validation block (0: ``rows // (folds + 1)``).
        repeats: K-fold repeated this many times, reshuffled each time.
        seed: Seed of the fold assignment.
        outer_folds: Nested cross-validation: this many outer folds, each holding ``folds``
            inner folds of its training rows (0: not nested).
    """

    target: str
    task: str | None = None
    categorical: tuple[str, ...] = field(default_factory=tuple)
    numeric: tuple[str, ...] = field(default_factory=tuple)
    drop: tuple[str, ...] = field(default_factory=tuple)
    group_column: str | None = None
    folds: int = 5
    split: str | None = "kfold"
    order_column: str | None = None
    gap: int = 0
    test_size: int = 0
    repeats: int = 1
    seed: int = 0
    outer_folds: int = 0


def preprocess_options(values: dict) -> PreprocessOptions:
    """The options of :data:`options.PREPROCESS` as given to a step, command or keyword.

    ``""`` and ``[]`` (a pipeline's "not given") become ``None`` and ``()``; an option not in
    ``values`` takes the table's default.
    """
    given = {}
    for name in options.PREPROCESS:
        opt = options.option(name)
        value = values.get(name, opt.default)
        if opt.kind == "names":
            value = tuple(value or ())
        elif opt.kind == "int":
            value = int(value)
        else:
            value = value or None
        given[name] = value
    given["split"] = given["split"] or "kfold"
    given["outer_folds"] = int(values.get("outer_folds") or 0)
    return PreprocessOptions(**given)


def preprocess(table: pd.DataFrame, options: PreprocessOptions) -> tuple[pd.DataFrame, dict]:
    """Turn a raw table into a typed table with a fold per row, and a JSON-ready schema.

    Args:
        table: The user's table as read; it is not modified.
        options: Target, overrides, fold count and seed.

    Returns:
        ``(prepared, schema)``. ``prepared`` holds the numeric columns as float64, the
        categorical columns as strings (missing stays missing), the target (class index for
        classification, float for regression), ``__row__`` (0-based position in the input
        table), ``__fold__`` and the group column if any. ``schema`` describes all of it.

    Raises:
        FoldwiseError: For any problem the user can fix, naming the column or option.
    """
    _check_options(table, options)
    columns = [str(c) for c in table.columns]
    table = table.set_axis(columns, axis=1)
    target = options.target

    keep = table[target].notna()
    dropped_rows = [int(i) for i in np.flatnonzero(~keep.to_numpy())]
    if not keep.any():
        raise FoldwiseError(
            f"target column {target!r} has no values: every row is missing it; choose another "
            "--target"
        )
    used = table.loc[keep.to_numpy()].reset_index(drop=True)
    rows = np.flatnonzero(keep.to_numpy())

    task, task_reason = infer_task(used[target], options.task)
    numeric, categorical = infer_roles(used, options)
    warnings = [note for name in categorical if name not in options.categorical
                for note in [text_column_note(used[name], name)] if note]
    warnings += check_cardinality(used, categorical)
    # Built at once: one column at a time fragments a wide table (pandas warns per column).
    features = {name: _as_numeric(used[name], name, rows) for name in numeric}
    features.update({name: _as_category_strings(used[name]) for name in categorical})
    prepared = pd.DataFrame(features, index=used.index)

    classes: list | None = None
    if task == "classification":
        # Time-ordered folds are not stratified: a class needs no row in every block.
        codes, classes = encode_labels(used[target], target,
                                       max(options.folds, options.outer_folds)
                                       if options.split == "kfold" else 1)
        prepared[target] = codes
    else:
        y = _as_numeric(used[target], target, rows)
        if y.nunique() < 2:
            raise FoldwiseError(
                f"target column {target!r} is constant ({float(y.iloc[0])!r}) on all {len(y)} "
                "rows: there is nothing to learn; choose another --target"
            )
        prepared[target] = y

    groups = None
    if options.group_column:
        groups = used[options.group_column]
        if groups.isna().any():
            raise FoldwiseError(
                f"group column {options.group_column!r} is missing on "
                f"{int(groups.isna().sum())} rows: fill it in or drop those rows"
            )
        prepared[options.group_column] = groups.astype(str).to_numpy()

    roles, splits = None, {"split": options.split, "folds_per_repeat": options.folds,
                           "repeats": options.repeats}
    if options.split == "time":
        positions = (order_positions(used[options.order_column], options.order_column)
                     if options.order_column else np.arange(len(used)))
        size, first_train = time_split_sizes(len(used), options.folds, options.gap,
                                             options.test_size)
        roles, strategy = time_roles(positions, options.folds, options.gap, size), "time"
        splits.update(order_column=options.order_column, gap=options.gap, test_size=size,
                      first_training_rows=first_train)
        if task == "classification":
            warnings += unseen_class_notes(roles, prepared[target].to_numpy(), classes)
    elif options.outer_folds:
        roles, nested, strategy = nested_roles(
            prepared[target].to_numpy(), task, options.outer_folds, options.folds, options.seed,
            None if groups is None else groups.astype(str).to_numpy())
        splits["nested"] = True
    elif options.repeats > 1:
        roles = repeated_roles(prepared[target].to_numpy(), task, options.folds,
                               options.repeats, options.seed)
        strategy = "repeated_stratified" if task == "classification" else "repeated_kfold"
    else:
        folds, strategy = assign_folds(
            prepared[target].to_numpy(), task, options.folds, options.seed,
            None if groups is None else groups.astype(str).to_numpy(),
        )
    prepared[ROW_COLUMN] = rows.astype("int64")
    if roles is None:
        prepared[FOLD_COLUMN] = folds.astype("int64")
    else:  # the first fold validating each row, and each fold's roles (folds.fold_view)
        prepared[FOLD_COLUMN] = first_of(roles)
        prepared = pd.concat([prepared, pd.DataFrame(role_columns(roles), index=prepared.index)],
                             axis=1)

    schema = {
        "target": target,
        "task": task,
        "task_inferred": options.task is None,
        "task_reason": task_reason,
        "classes": classes,
        "numeric": numeric,
        "categorical": categorical,
        "dropped_columns": list(options.drop),
        "group_column": options.group_column,
        "folds": len(roles) if roles is not None else options.folds,
        "fold_strategy": strategy,
        "splits": splits,
        **({"nested": nested} if options.outer_folds else {}),
        "seed": options.seed,
        "rows_in": len(table),
        "rows_used": len(prepared),
        "rows_dropped_missing_target": dropped_rows,
        "warnings": warnings,
    }
    return prepared, schema


def _check_splits(options: PreprocessOptions) -> None:
    """Refuse fold options that do not go together, before the table is read."""
    if options.split not in SPLITS:
        raise FoldwiseError(f"--split must be one of {', '.join(SPLITS)}, got {options.split!r}")
    if options.repeats < 1:
        raise FoldwiseError(f"--repeats must be at least 1, got {options.repeats}")
    for flag, value in (("--gap", options.gap), ("--test-size", options.test_size)):
        if value < 0:
            raise FoldwiseError(f"{flag} must be at least 0, got {value}")
    if options.split != "time":
        given = [flag for flag, value in (("--order-column", options.order_column),
                                          ("--gap", options.gap),
                                          ("--test-size", options.test_size)) if value]
        if given:
            raise FoldwiseError(
                f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to "
                "time-ordered folds: add --split time, or leave "
                f"{'it' if len(given) == 1 else 'them'} out")
    else:
        if options.repeats > 1:
            raise FoldwiseError(
                "--repeats applies to shuffled K-fold: time-ordered folds are the same every "
                "time; leave --repeats out or use --split kfold")
        if options.group_column:
            raise FoldwiseError(
                "--group-column cannot be combined with --split time (time-ordered folds "
                "split by the order column): leave one of them out")
    if options.outer_folds:
        if options.outer_folds < 2:
            raise FoldwiseError(f"--outer-folds must be at least 2, got {options.outer_folds}")
        if options.split != "kfold" or options.repeats > 1:
            raise FoldwiseError(
                "nested cross-validation runs shuffled K-fold inside shuffled K-fold: leave "
                "--split time and --repeats out")
    if options.repeats > 1 and options.group_column:
        raise FoldwiseError(
            "--repeats cannot be combined with --group-column: repeated K-fold reshuffles "
            "rows, and groups would not stay together across repetitions; leave one of them "
            "out")


def _check_options(table: pd.DataFrame, options: PreprocessOptions) -> None:
    columns = [str(c) for c in table.columns]
    if options.folds < 2:
        raise FoldwiseError(f"--folds must be at least 2, got {options.folds}")
    _check_splits(options)
    if options.task is not None and options.task not in TASKS:
        raise FoldwiseError(f"--task must be one of {', '.join(TASKS)}, got {options.task!r}")
    reserved = [c for c in columns if c in RESERVED_COLUMNS or c.startswith(SPLIT_PREFIX)]
    if reserved:
        raise FoldwiseError(
            f"column names {reserved} are reserved by foldwise: rename those columns"
        )
    named = [("--target", [options.target])]
    named += [("--categorical", list(options.categorical)), ("--numeric", list(options.numeric))]
    named += [("--drop", list(options.drop))]
    if options.group_column:
        named.append(("--group-column", [options.group_column]))
    if options.order_column:
        named.append(("--order-column", [options.order_column]))
    for flag, names in named:
        for name in names:
            if name not in columns:
                raise FoldwiseError(
                    f"{flag} column {name!r} is not in the table{suggest(name, columns)} "
                    f"(columns: {', '.join(columns)})"
                )
    both = set(options.categorical) & set(options.numeric)
    if both:
        raise FoldwiseError(
            f"columns {sorted(both)} are given as both --categorical and --numeric: pick one"
        )
    special = {options.target, options.group_column, options.order_column} - {None}
    for flag, names in named[1:]:
        clash = special & set(names)
        if clash and flag not in ("--group-column", "--order-column"):
            raise FoldwiseError(
                f"{flag} names {sorted(clash)}, which is the target, group or order column: "
                "leave it out of the feature options"
            )
    if options.group_column == options.target:
        raise FoldwiseError("--group-column cannot be the target column: choose another column")
    if options.order_column and options.order_column in (options.target, options.group_column):
        raise FoldwiseError("--order-column cannot be the target or group column: name the "
                            "column of times")
    if len(table) < options.folds:
        raise FoldwiseError(
            f"the table has {len(table)} rows, fewer than --folds {options.folds}: use at most "
            f"{len(table)} folds or more data"
        )


def infer_task(target: pd.Series, task: str | None) -> tuple[str, str]:
    """Return the task and why: the user's choice, or inferred from the target's values.

    Non-numeric or boolean targets are class labels, and so are numeric targets with exactly
    two distinct values and integer-typed targets with at most 10 distinct values; any other
    numeric target (floats in particular) is a regression target.
    """
    if task is not None:
        return task, "--task"
    if pd.api.types.is_bool_dtype(target) or not pd.api.types.is_numeric_dtype(target):
        return "classification", "the target is not numeric"
    distinct = int(target.nunique())
    if distinct == 2:
        return "classification", "the numeric target has 2 distinct values"
    if pd.api.types.is_integer_dtype(target) and 2 < distinct <= MAX_INFERRED_INTEGER_CLASSES:
        return "classification", f"the target has {distinct} distinct integer values"
    return "regression", "the target is numeric"


def infer_roles(table: pd.DataFrame, options: PreprocessOptions) -> tuple[list, list]:
    """Split the feature columns into numeric and categorical, honouring the user's overrides.

    Returns:
        ``(numeric, categorical)`` column names in table order.
    """
    excluded = {options.target, options.group_column, options.order_column, *options.drop}
    numeric, categorical = [], []
    for name in table.columns:
        if name in excluded:
            continue
        column = table[name]
        if name in options.categorical:
            categorical.append(name)
        elif name in options.numeric:
            numeric.append(name)
        elif pd.api.types.is_bool_dtype(column):
            categorical.append(name)
        elif pd.api.types.is_numeric_dtype(column):
            numeric.append(name)
        elif pd.api.types.is_timedelta64_dtype(column):
            raise FoldwiseError(
                f"column {name!r} holds durations: turn them into numbers (e.g. seconds) "
                f"before running, or leave it out with --drop {name}"
            )
        elif pd.api.types.is_datetime64_any_dtype(column):
            raise FoldwiseError(
                f"column {name!r} holds dates or times: turn it into numbers (e.g. year, day of "
                f"week) before running, or leave it out with --drop {name}"
            )
        else:
            categorical.append(name)
    if not numeric and not categorical:
        raise FoldwiseError(
            f"no feature columns are left besides the target {options.target!r}: the table "
            "needs at least one other column"
        )
    for name in numeric + categorical:
        if table[name].isna().all():
            raise FoldwiseError(
                f"column {name!r} has no values at all: leave it out with --drop {name}"
            )
    return numeric, categorical


MAX_ONE_HOT_CELLS = 250_000_000  # one-hot columns × rows: about 1 GB as float32 per fold


def check_cardinality(table: pd.DataFrame, categorical: list[str]) -> list[str]:
    """Warnings for identifier-like columns; an error when one-hot encoding would not fit.

    A text column with a different value in (nearly) every row is an identifier, not a
    feature: it is named in a warning. The one-hot encoding of every categorical column
    must stay within :data:`MAX_ONE_HOT_CELLS` cells (rows × levels), so a table of many
    rows with thousands of levels is refused with the columns that make it so.

    Raises:
        FoldwiseError: The one-hot encoding would be too large to hold.
    """
    rows = len(table)
    levels = {name: int(table[name].nunique()) for name in categorical}
    notes = [f"column {name!r} has a different value in {'every' if n == rows else 'almost every'} "
             f"row ({n} of {rows}): it looks like an identifier, which predicts nothing for new "
             f"rows; leave it out with --drop {name}"
             for name, n in levels.items() if rows >= 50 and n >= 0.95 * rows]
    cells = rows * sum(levels.values())
    if cells > MAX_ONE_HOT_CELLS:
        worst = sorted(levels.items(), key=lambda item: -item[1])[:3]
        named = ", ".join(f"{name!r} ({n} levels)" for name, n in worst)
        raise FoldwiseError(
            f"one-hot encoding the categorical columns would take {rows} rows × "
            f"{sum(levels.values())} levels ({cells * 4 / 2**30:.1f} GiB per fold), too much "
            f"to hold; the largest: {named}: leave such columns out with --drop, or group "
            "their rare levels before running")
    return notes


FORMATTED_NUMBER = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
DATE_LIKE = (r"\d{4}-\d{1,2}-\d{1,2}"
             r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?"
             r"|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}(?: \d{1,2}:\d{2}(?::\d{2})?)?")


def text_column_note(column: pd.Series, name: str) -> str:
    """A warning for a text column whose values look like formatted numbers or dates.

    Such a column is treated as categorical (one level per distinct value), which is rarely
    what its author meant; the note says so and what to do. Empty when it looks like neither.
    """
    values = column.dropna().astype(str).str.strip()
    if values.empty:
        return ""
    sample = values.iloc[:1000]
    if sample.str.fullmatch(FORMATTED_NUMBER).all() and sample.str.contains(",").any():
        example = sample[sample.str.contains(",")].iloc[0]
        return (f"column {name!r} holds numbers written with thousands separators (such as "
                f"{example!r}): it is treated as categorical; remove the separators to use it "
                "as a number")
    if sample.str.fullmatch(DATE_LIKE).mean() >= 0.9:
        return (f"column {name!r} looks like dates or times (such as {sample.iloc[0]!r}): it is "
                f"treated as categorical ({values.nunique()} levels); turn it into numbers "
                f"(year, month, day of week) or leave it out with --drop {name}")
    return ""


def true_false(column: pd.Series) -> pd.Series:
    """Which cells hold true/false (a boolean column, or booleans among an object column's)."""
    if pd.api.types.is_bool_dtype(column):
        return column.notna().astype(bool)
    if column.dtype != object:
        return pd.Series(False, index=column.index)
    return column.map(lambda v: isinstance(v, (bool, np.bool_))).astype(bool)


def _as_numeric(column: pd.Series, name: str, rows: np.ndarray | None = None) -> pd.Series:
    """The column as float64, refused in one line when it cannot be.

    ``rows``: each value's position in the table as read, for messages.
    """
    if true_false(column).any():
        raise FoldwiseError(
            f"column {name!r} holds true/false values, which foldwise reads as categories (and "
            f"an exported model refuses as numbers): leave out --numeric {name}, or write them "
            "as 1 and 0")
    if pd.api.types.is_numeric_dtype(column):
        values = column.astype("float64")
    else:
        values = pd.to_numeric(column, errors="coerce").astype("float64")
        bad = column.notna() & values.isna()
        if bad.any():
            first = column[bad].iloc[0]
            raise FoldwiseError(
                f"column {name!r} is treated as numeric but holds {int(bad.sum())} non-numeric "
                f"values such as {first!r}: clean them, or use --categorical {name}"
            )
    infinite = np.isinf(values.to_numpy())
    if infinite.any():
        raise FoldwiseError(
            f"column {name!r} has {int(infinite.sum())} infinite values: replace them with "
            "finite numbers or leave the cells empty (missing values are imputed)"
        )
    # The models compute in float32, and the exported model refuses such values at
    # prediction: training must not accept them either (scaled, they flatten the column).
    beyond = np.abs(values.to_numpy()) > np.finfo("float32").max  # NaN compares False
    if beyond.any():
        first = int(np.flatnonzero(beyond)[0])
        row = int(rows[first] if rows is not None else first) + 1
        raise FoldwiseError(
            f"column {name!r} has {int(beyond.sum())} values beyond float32's range, which the "
            f"models compute in (such as {values.iloc[first]:g} in data row {row}): check them "
            "for unit or entry errors, or rescale the column"
        )
    return values


def _as_category_strings(column: pd.Series) -> pd.Series:
    """Categories as strings (``2007`` not ``2007.0`` for whole numbers); missing stays NA."""
    def text(value: object) -> str:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return column.map(lambda v: text(v) if pd.notna(v) else pd.NA).astype("string")


MAX_CLASSES = 1000  # a target with more distinct values is not a classification target


def unseen_class_notes(roles: np.ndarray, codes: np.ndarray, classes: list) -> list[str]:
    """A note for each time-ordered fold whose training rows lack a class it is scored on."""
    notes = []
    for fold, role in enumerate(roles):
        seen = set(codes[role == TRAIN].tolist())
        missing = sorted(set(codes[role == VALIDATION].tolist()) - seen)
        if missing:
            named = ", ".join(repr(classes[c]) for c in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            notes.append(f"time-ordered fold {fold} scores class {named}{more} but trains on no "
                         "row of it, so its model cannot predict it (is the table ordered by "
                         "the target?)")
    return notes


def encode_labels(target: pd.Series, name: str, folds: int) -> tuple[np.ndarray, list]:
    """Encode class labels as 0..C-1 in sorted order, checking there are enough of each.

    Returns:
        ``(codes, classes)`` with ``classes`` as JSON-ready Python values.
    """
    if pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target):
        values = target.astype("float64").to_numpy()
        if np.all(values == np.round(values)):
            values = values.astype("int64")
    else:
        values = target.astype(str).to_numpy()
    classes, codes = np.unique(values, return_inverse=True)
    if len(classes) > MAX_CLASSES:
        shown = ", ".join(repr(_plain(v)) for v in classes[:5])
        raise FoldwiseError(
            f"target column {name!r} has {len(classes)} distinct values (such as {shown}), "
            f"too many to be classes (at most {MAX_CLASSES}): is it a number to predict? use "
            "--task regression")
    if len(classes) < 2:
        raise FoldwiseError(
            f"target column {name!r} has a single class ({_plain(classes[0])!r}): "
            "classification needs at least two; choose another --target"
        )
    counts = np.bincount(codes, minlength=len(classes))
    smallest = int(counts.min())
    if smallest < folds:
        few = np.flatnonzero(counts < folds)
        rare = [f"{_plain(classes[i])!r} ({counts[i]} rows)" for i in few[:5]]
        if len(few) > 5:
            rare.append(f"and {len(few) - 5} more")
        hint = (
            f"use --folds {smallest} or fewer" if smallest >= 2
            else "remove those rows or merge those classes"
        )
        if values.dtype.kind == "f":  # fractional labels: rather a number to predict
            hint += " (or, if it is a number to predict, use --task regression)"
        raise FoldwiseError(
            f"target column {name!r}: classes {', '.join(rare)} have fewer rows than --folds "
            f"{folds}, so some validation folds would lack them; {hint}"
        )
    return codes.astype("int64"), [_plain(v) for v in classes]


def _plain(value: object) -> object:
    """A NumPy scalar as the plain Python value (for JSON and messages)."""
    return value.item() if hasattr(value, "item") else value


def nested_roles(y: np.ndarray, task: str, outer_folds: int, inner_folds: int, seed: int,
                 groups: np.ndarray | None = None) -> tuple[np.ndarray, dict, str]:
    """Role matrix of nested cross-validation, its folds' numbering, and the strategy.

    Outer fold ``o`` (fold ``O * I + o``) is :func:`assign_folds`' fold ``o`` of the table;
    its training rows are split again by :func:`assign_folds` (the same seed, as
    scikit-learn's ``GridSearchCV(cv=...)`` splits the rows ``cross_validate`` hands it) into
    inner folds ``o * I + i``, whose rows are the outer training rows only.

    Raises:
        FoldwiseError: The table (or a class) is too small for outer × inner folds.
    """
    rows = len(y)
    if rows < outer_folds * inner_folds:
        raise FoldwiseError(
            f"the table has {rows} rows, too few for nested cross-validation of "
            f"{outer_folds} outer folds of {inner_folds} inner folds (at least "
            f"{outer_folds * inner_folds} rows): use fewer --outer-folds or --folds, or more "
            "data")
    outer, strategy = assign_folds(y, task, outer_folds, seed, groups)
    roles = np.full((outer_folds * inner_folds + outer_folds, rows), UNUSED, dtype="int8")
    for o in range(outer_folds):
        training = np.flatnonzero(outer != o)
        if task == "classification":
            counts = np.bincount(y[training], minlength=int(y.max()) + 1)
            present = counts[counts > 0]
            if present.min() < inner_folds:
                raise FoldwiseError(
                    f"nested cross-validation: outer fold {o}'s training rows hold only "
                    f"{int(present.min())} rows of a class, fewer than --folds {inner_folds} "
                    "inner folds; use fewer --folds or --outer-folds")
        inner, _ = assign_folds(y[training], task, inner_folds, seed,
                                None if groups is None else groups[training])
        for i in range(inner_folds):
            roles[o * inner_folds + i, training] = np.where(inner == i, VALIDATION, TRAIN)
        roles[outer_folds * inner_folds + o] = np.where(outer == o, VALIDATION, TRAIN)
    nested = {"outer_folds": outer_folds, "inner_folds": inner_folds,
              "inner": [[o * inner_folds + i for i in range(inner_folds)]
                        for o in range(outer_folds)],
              "outer": [outer_folds * inner_folds + o for o in range(outer_folds)]}
    return roles, nested, f"nested_{strategy}"


def assign_folds(
    y: np.ndarray, task: str, folds: int, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, str]:
    """Give every row a validation fold in ``0..folds-1``, reproducibly from ``seed``.

    Classification uses stratified folds, regression shuffled K-fold; with groups, rows of a
    group share a fold (stratified by class where possible).

    Returns:
        ``(fold_per_row, strategy_name)``.
    """
    n = len(y)
    placeholder = np.zeros((n, 1))
    if groups is not None:
        distinct = len(np.unique(groups))
        if distinct < folds:
            raise FoldwiseError(
                f"the group column has {distinct} distinct groups, fewer than --folds {folds}: "
                f"use at most {distinct} folds"
            )
        if task == "classification":
            splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            strategy = "stratified_group"
        else:
            splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            strategy = "group"
        splits = splitter.split(placeholder, y, groups)
    elif task == "classification":
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        splits, strategy = splitter.split(placeholder, y), "stratified"
    else:
        splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
        splits, strategy = splitter.split(placeholder), "kfold"
    assignment = np.full(n, -1, dtype="int64")
    for fold, (_, validation) in enumerate(splits):
        assignment[validation] = fold
    return assignment, strategy
