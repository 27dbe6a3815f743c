"""The search room: how a search chooses what to train.

Grids, spaces and candidates (``grid``, ``sampling``), packing trials into train tasks
(``packing``), the halving schedule (``halving``) and its rungs (``rungs``), and a run's time
and cost estimate (``costs``). Imports the ground floor, data, scoring, models and training.
"""
