"""Pure logic of foldwise: pandas, numpy, scikit-learn and Keras; never KFP.

Modules are imported on demand so that a step which does not train never pays for importing
TensorFlow: ``from foldwise.components.core import scaling``.
"""

from foldwise.components.core.errors import FoldwiseError

__all__ = ["FoldwiseError"]
