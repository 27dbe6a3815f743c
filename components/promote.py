"""KFP component: point ``current.json`` at the new version, only if it is better."""

from typing import NamedTuple

from kfp.dsl import Artifact, Input

from foldwise.components.image import component


@component
def promote(schema: Input[Artifact], best_config: Input[Artifact], champion: list,
            manifest: str, promote_to: str) -> NamedTuple("Outputs", decision=str,
                                                           promoted=bool):
    """Promote the exported challenger if it beat the champion on the same folds.

    Args:
        schema: The preprocess step's schema.
        best_config: The aggregate step's best Keras configuration.
        champion: The champion step's answer (``[]`` when nothing is promoted yet).
        manifest: URI of the challenger's export manifest (written last, so the export is
            complete when this step runs).
        promote_to: Local folder or ``gs://`` prefix holding ``current.json``.

    Returns:
        ``decision``: JSON of the decision: ``promote``, ``version``, ``config_id``,
        ``reason``; ``promoted``: whether ``current.json`` now points at the new version
        (for a condition downstream, such as deploying it).
    """
    import json
    import tempfile
    from collections import namedtuple
    from pathlib import Path

    from foldwise.components import storage
    from foldwise.components.core.jsonio import class_count, read_json, write_json
    from foldwise.components.core.models.spec import config_id, normalize_spec
    from foldwise.components.core.results.promotion import POINTER, decide, pointer

    described = read_json(schema.path)
    current = None
    if champion:  # its id as configurations are identified now (defaults may have moved)
        params = normalize_spec(champion[0]["params"], described["task"],
                                class_count(described))
        current = {**champion[0], "config_id": config_id(params)}
    version = manifest[len(promote_to.rstrip("/")) + 1:].rsplit("/", 1)[0]
    decision = decide(read_json(best_config.path)["config_id"], current, version)
    if decision["promote"]:
        with tempfile.TemporaryDirectory(prefix="foldwise-") as folder:
            local = Path(folder) / POINTER
            write_json(local, pointer(decision))
            storage.upload(local, storage.join(promote_to, POINTER))
    outputs = namedtuple("Outputs", ["decision", "promoted"])
    return outputs(json.dumps(decision), bool(decision["promote"]))
