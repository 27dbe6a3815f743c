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
    from foldwise.components import storage
    from foldwise.components.core.results.promotion import promoted_configuration

    return promoted_configuration(promote_to, storage.exists, storage.read_bytes)
