"""foldwise beside the ecosystem it composes with: Google's pipeline components.

Everything here uses the real google-cloud-pipeline-components and google-cloud-aiplatform
packages that the README's setup installs beside foldwise.
"""

import subprocess
import sys
from importlib.metadata import requires, version

from packaging.requirements import Requirement


def test_the_environment_is_consistent():
    """``pip check``: every installed package's requirements hold, GCPC's included."""
    checked = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_google_cloud_pipeline_components_and_foldwise_accept_the_same_aiplatform():
    installed = version("google-cloud-aiplatform")
    for package in ("foldwise", "google-cloud-pipeline-components"):
        (wanted,) = [Requirement(r) for r in requires(package)
                     if Requirement(r).name == "google-cloud-aiplatform" and not Requirement(
                         r).marker]
        assert wanted.specifier.contains(installed), (package, str(wanted), installed)
