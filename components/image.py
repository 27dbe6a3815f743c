"""The one component decorator: every foldwise component runs in the same image.

The image carries foldwise and its pinned dependencies (see docker/), so components install
nothing at start-up. ``FOLDWISE_IMAGE`` overrides the image for every component at once.
"""

import functools
import os
from importlib.metadata import PackageNotFoundError, version

from kfp import dsl

try:
    VERSION = version("foldwise")
except PackageNotFoundError:  # running from a source tree that is not installed
    VERSION = "0.0.0"

IMAGE = os.environ.get("FOLDWISE_IMAGE", f"foldwise:{VERSION}-cpu")

component = functools.partial(dsl.component, base_image=IMAGE, install_kfp_package=False)
