"""Names of the bookkeeping columns foldwise adds to a table."""

ROW_COLUMN = "__row__"  # 0-based position of the row in the user's table
FOLD_COLUMN = "__fold__"  # the validation fold the row belongs to
RESERVED_COLUMNS = (ROW_COLUMN, FOLD_COLUMN)
