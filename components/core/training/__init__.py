"""The training room: how a fold's model is trained.

One fold's fit and its result (``fit``), the one JAX engine that packs many models into one
program (``vmapped``) and its step costs (``step_costs``), a train task's trials (``trials``),
resume (``resume``), and the TensorFlow process for builders that need it
(``engine_process``). Imports the ground floor, data, scoring and models.
"""
