"""One target form: how a target reaches a model's loss, and how raw outputs come back.

Every model foldwise trains or serves goes through a :class:`TargetForm`: foldwise's MLP and
users' builders (in the engine or through Keras' ``fit``), scikit-learn's MLP baseline, and
the serving model's last layer (``serving.serving_model.UserScale``, given
:meth:`TargetForm.serving`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# What a loss takes as its target, by the kind of output (``keras_model.output_kind``) of
# foldwise's own MLP: scaled values, one sigmoid probability, one probability per class.
MLP_TARGETS = {"regression": "values", "binary": "binary", "multiclass": "one_hot"}


@dataclass(frozen=True)
class TargetForm:
    """A target in the form a loss takes, and the model's raw outputs in the user's form.

    Attributes:
        target: ``values`` (regression, standardized by ``scaling``), ``binary`` (0/1, one
            sigmoid unit), ``sparse`` (class indices) or ``one_hot`` (one column per class).
        n_classes: The classes of a classification target (``None`` for regression).
        scaling: A regression target's ``{"mean", "scale"}`` (``None``: as it is).
        logits: The outputs are logits or scores (a loss ``from_logits``, hinge losses):
            turned into probabilities by a sigmoid or a softmax.
    """

    target: str
    n_classes: int | None = None
    scaling: dict | None = None
    logits: bool = False

    @classmethod
    def of_mlp(cls, kind: str, n_classes: int | None, scaling: dict | None) -> TargetForm:
        """The form of foldwise's own MLP (and its scikit-learn twin) for an output ``kind``."""
        return cls(MLP_TARGETS[kind], n_classes, scaling)

    def scaled(self, y: np.ndarray) -> np.ndarray:
        """Regression targets as the model learns them (float32, one dimension)."""
        if self.scaling is None:
            return np.asarray(y).astype("float32")
        return ((y - self.scaling["mean"]) / self.scaling["scale"]).astype("float32")

    def unscaled(self, values: np.ndarray) -> np.ndarray:
        """Regression outputs on the target's own scale."""
        if self.scaling is None:
            return values
        return values * self.scaling["scale"] + self.scaling["mean"]

    def loss_targets(self, y: np.ndarray) -> np.ndarray:
        """``y`` in the form the loss takes: a column of values or 0/1, indices, one-hot."""
        if self.target == "values":
            return self.scaled(y).reshape(-1, 1)
        if self.target == "binary":
            return np.asarray(y).astype("float32").reshape(-1, 1)
        if self.target == "sparse":
            return np.asarray(y).astype("int32")
        return np.eye(self.n_classes, dtype="float32")[np.asarray(y).astype(int)]

    def user_values(self, raw: np.ndarray) -> np.ndarray:
        """Raw outputs as regression values (scaling undone) or one probability per class.

        One sigmoid unit gives two columns; logits and scores go through a sigmoid or a
        softmax; probabilities are renormalized in float64 (a float32 softmax does not sum
        to 1 exactly). A diverged model's NaN outputs stay NaN.
        """
        raw = np.asarray(raw, dtype="float64")
        if self.target == "values":
            return self.unscaled(raw[:, 0])
        with np.errstate(invalid="ignore", over="ignore"):
            if self.target == "binary":  # one unit: the positive class's probability
                positive = (1.0 / (1.0 + np.exp(-raw[:, 0])) if self.logits
                            else np.clip(raw[:, 0], 0.0, 1.0))
                return np.column_stack([1.0 - positive, positive])
            if self.logits:
                raw = np.exp(raw - raw.max(axis=1, keepdims=True))
            return raw / raw.sum(axis=1, keepdims=True)

    def serving(self, kind: str) -> dict:
        """The serving model's last layer's settings (``core.serving.serving_model.UserScale``)."""
        scaling = self.scaling or {"mean": 0.0, "scale": 1.0}
        return {"kind": kind, "mean": scaling["mean"], "scale": scaling["scale"],
                "logits": self.logits}
