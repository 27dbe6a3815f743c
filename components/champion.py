"""KFP component: the configuration of the model currently promoted, if any."""

from foldwise.components.image import component


@component
def champion(promote_to: str) -> list:
    """Read ``current.json`` under ``promote_to`` and the promoted version's configuration.

    Args:
        promote_to: Local folder or ``gs://`` prefix that retrains promote models to.

    Returns:
        ``[]`` when nothing is promoted yet, else ``[{"config_id", "version", "params"}]``:
        the configuration is cross-validated again beside the challengers.
    """
    import json

    from foldwise.components import storage
    from foldwise.components.core.promotion import POINTER

    pointer_uri = storage.join(promote_to, POINTER)
    if not storage.exists(pointer_uri):
        return []
    current = json.loads(storage.read_bytes(pointer_uri))
    summary = json.loads(storage.read_bytes(
        storage.join(promote_to, current["version"], "summary.json")))
    return [{"config_id": summary["best_config_id"], "version": current["version"],
             "params": summary["best_params"]}]
