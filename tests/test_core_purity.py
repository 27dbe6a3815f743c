import ast
import os
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "components" / "core"


def test_core_sources_never_import_kfp():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "kfp"]
    assert offenders == []
    assert len(list(CORE.rglob("*.py"))) >= 30  # the scan really looked at the core


def test_importing_every_core_module_in_a_step_loads_no_kfp():
    """Inside a step (KFP sets _KFP_RUNTIME) the core loads without any of kfp."""
    modules = [".".join(("foldwise.components.core", *p.relative_to(CORE).with_suffix("").parts))
               for p in CORE.rglob("*.py")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m == 'kfp' or m.startswith('kfp.')))\n"
    )
    env = {**os.environ, "_KFP_RUNTIME": "true"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout.strip() == "[]"


def test_light_steps_do_not_import_tensorflow():
    code = (
        "import sys\n"
        "import foldwise.components.core.data.preprocess\n"
        "import foldwise.components.core.data.scaling\n"
        "import foldwise.components.core.data.encoding\n"
        "import foldwise.components.core.results.aggregate\n"
        "import foldwise.components.core.models.spec\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False False"
