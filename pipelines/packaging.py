"""Compiling foldwise for a cluster: pipelines as one YAML each, components one file each."""

from __future__ import annotations

from pathlib import Path

from foldwise.components.core.errors import FoldwiseError
from foldwise.pipelines.cluster import ClusterSettings


def pipeline_builders() -> dict:
    """Pipeline name → function building it from :class:`ClusterSettings`."""
    from foldwise.pipelines.cross_validation import build_cross_validation
    from foldwise.pipelines.grid_search import build_grid_search
    from foldwise.pipelines.halving_search import build_halving_search
    from foldwise.pipelines.random_search import build_random_search
    from foldwise.pipelines.retrain import build_retrain

    return {"cross-validation": build_cross_validation, "grid-search": build_grid_search,
            "random-search": build_random_search, "halving-search": build_halving_search,
            "retrain": build_retrain}


def build_pipeline(name: str, settings: ClusterSettings, rungs: int | None = None):
    """The ``@dsl.pipeline`` of ``name`` (``rungs``: a halving search's, else ignored).

    Raises:
        FoldwiseError: An unknown pipeline, or ``rungs`` below 1.
    """
    builders = pipeline_builders()
    if name not in builders:
        raise FoldwiseError(f"unknown pipeline {name!r}; known: {', '.join(builders)}")
    if name != "halving-search" or rungs is None:
        return builders[name](settings)
    if int(rungs) < 1:
        raise FoldwiseError(f"--rungs must be at least 1, got {rungs}")
    return builders[name](settings, int(rungs))


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
