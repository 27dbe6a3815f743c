"""Compiling foldwise for a cluster: pipelines as one YAML each, components one file each."""

from __future__ import annotations

from pathlib import Path

from foldwise.components.core.errors import FoldwiseError
from foldwise.pipelines.dags.cluster import ClusterSettings


def build_pipeline(name: str, settings: ClusterSettings, rungs: int | None = None):
    """The ``@dsl.pipeline`` of the search kind ``name`` (``rungs``: a staged kind's).

    Raises:
        FoldwiseError: An unknown kind, or ``rungs`` below 1.
    """
    from foldwise.pipelines import kinds

    return kinds.get(name).build(settings, rungs)


def compile_pipeline(name: str, settings: ClusterSettings, out: Path,
                     rungs: int | None = None) -> Path:
    """Compile one pipeline to KFP's YAML (written under a temporary name, then renamed)."""
    pipeline = build_pipeline(name, settings, rungs)
    if out.suffix not in (".yaml", ".yml"):
        raise FoldwiseError(f"--out {out} must be a .yaml file")
    _compile_atomically(pipeline, out)
    return out


def _compile_atomically(pipeline_or_component, out: Path) -> None:
    """Compile under a temporary name, then rename: no half-written YAML is ever there."""
    from kfp import compiler

    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.stem}.partial.yaml")
    compiler.Compiler().compile(pipeline_or_component, str(temporary))
    temporary.replace(out)


def component_with_image(component, image: str | None):
    """The component, or the same function built into a component on another image."""
    if not image:
        return component
    from kfp import dsl

    return dsl.component(func=component.python_func, base_image=image,
                         install_kfp_package=False)


def compile_components(folder: Path, image: str | None = None) -> list[Path]:
    """Write each component as ``<name>.yaml``.

    Each file is loadable by ``kfp.components.load_component_from_file``.
    """
    import foldwise.components as components

    written = []
    for name in components.__all__:
        path = folder / f"{name}.yaml"
        _compile_atomically(component_with_image(getattr(components, name), image), path)
        written.append(path)
    return written
