"""Champion and challenger: which model a retrain promotes, and where the pointer lives.

A promotion folder holds complete exports under ``versions/<id>/`` and one small pointer,
``current.json``, naming the version being served. Promoting rewrites only the pointer (one
object write), after the new version is complete: the old model stays served until then.
"""

from __future__ import annotations

from datetime import datetime, timezone

POINTER = "current.json"
VERSIONS = "versions"


def promoted_configuration(promote_to: str, exists, read_bytes) -> list[dict]:
    """The configuration of the model promoted under ``promote_to``, if any.

    Args:
        promote_to: Local folder or ``gs://`` prefix that retrains promote models to.
        exists: Whether a path or URI exists (``storage.exists``).
        read_bytes: Reads a path or URI (``storage.read_bytes``).

    Returns:
        ``[]`` when nothing is promoted yet, else ``[{"config_id", "version", "params"}]``
        from the promoted version's ``summary.json`` (its complete spec).
    """
    import json

    pointer_uri = f"{promote_to.rstrip('/')}/{POINTER}"
    if not exists(pointer_uri):
        return []
    version = json.loads(read_bytes(pointer_uri))["version"]
    summary = json.loads(read_bytes(f"{promote_to.rstrip('/')}/{version}/summary.json"))
    return [{"config_id": summary["best_config_id"], "version": version,
             "params": summary["best_params"]}]


def new_version_name() -> str:
    """A sortable, unique version folder name: ``20261123T221500Z-1a2b3c``."""
    import secrets

    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def decide(best_config_id: str, champion: dict | None, version: str) -> dict:
    """Promote the challenger unless the champion's configuration scored best.

    The champion's configuration is cross-validated on the same folds as the challengers and
    listed first, so it also wins ties: only a strictly better challenger is promoted.

    Args:
        best_config_id: The configuration ranked first among the Keras configurations.
        champion: ``{"config_id", "version", ...}`` of the model served now, or ``None``.
        version: The version folder the challenger was exported to.

    Returns:
        ``{"promote": bool, "reason": str, "version": served version afterwards, ...}``.
    """
    if champion is None:
        return {"promote": True, "version": version, "config_id": best_config_id,
                "reason": "nothing was promoted yet"}
    if best_config_id == champion["config_id"]:
        return {"promote": False, "version": champion["version"],
                "config_id": champion["config_id"],
                "reason": "the promoted configuration scored at least as well as every "
                          "challenger on the same folds"}
    return {"promote": True, "version": version, "config_id": best_config_id,
            "reason": f"challenger {best_config_id} scored better than the promoted "
                      f"{champion['config_id']} on the same folds"}


def pointer(decision: dict) -> dict:
    """The content of ``current.json`` after a promotion."""
    return {"version": decision["version"], "config_id": decision["config_id"],
            "promoted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "reason": decision["reason"]}
