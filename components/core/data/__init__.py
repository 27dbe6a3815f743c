"""The data room: a table's way to model-ready rows.

Reading and checking tables (``table``), the preprocess step's imputation and schema
(``preprocess``), scaling (``scaling``), one-hot encoding (``encoding``), fold tables and a
fold's arrays (``fold_data``), the per-fold transforms (``fold_transforms``), and the all-rows
fit the final model serves (``whole_table``). Imports only the ground floor (``core.errors``,
``core.options``, ``core.jsonio``, ``core.columns``).
"""
