"""Run a checks script of tests/helpers/ in a process of its own and read what it measured."""

import json
import subprocess
import sys
from pathlib import Path


def measured(script: str, folder: Path, timeout: int = 900) -> dict:
    """``python tests/helpers/SCRIPT OUT.json`` (a Keras-on-JAX process); its JSON."""
    out = folder / "checks.json"
    done = subprocess.run([sys.executable, str(Path(__file__).resolve().parent / script),
                           str(out)], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())
