"""The results room: what a run answers.

The aggregated ``cv_results`` (``aggregate``), the HTML report (``report``) and the retrain
promotion rule (``promotion``). Imports the ground floor, scoring and models.
"""
