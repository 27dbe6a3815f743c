"""The scoring room: how predictions are scored and folds' scores compared.

Metrics (``metrics``), the corrected paired t-test and the one-standard-error rule (``stats``).
Imports only the ground floor.
"""
