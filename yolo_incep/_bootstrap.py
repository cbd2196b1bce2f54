"""Run from yolo_incep.pth at interpreter start-up: install the plugin once Ultralytics imports its model parser.

Imports only `sys` (not even importlib.abc: finders and loaders are duck-typed), so unrelated Python start-up
stays as fast as before (no torch, no ultralytics).
"""

from __future__ import annotations

import sys

_TARGET = "ultralytics.nn.tasks"


def _install(tasks) -> None:
    """Install the plugin; a failure warns instead of breaking every Ultralytics import in this interpreter."""
    try:
        from yolo_incep.plugin import install

        install(tasks)
    except Exception as e:  # noqa: BLE001 - Ultralytics must stay usable without our layers
        import warnings

        warnings.warn(f"yolo_incep: plugin not installed, Ultralytics will not know its layers: {e!r}", stacklevel=2)


class _PatchingLoader:
    """Delegates to the real loader, then installs the plugin into the freshly executed module."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _install(module)

    def __getattr__(self, name):  # get_source, get_filename, ... for tracebacks and inspect
        return getattr(self._loader, name)


class _TasksFinder:
    """Finds nothing itself; wraps the loader of `ultralytics.nn.tasks` found by the finders after it."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        sys.meta_path.remove(self)  # once is enough, and the other finders must not see us again
        for finder in sys.meta_path:
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


def activate() -> None:
    """Install the finder, or the plugin directly when Ultralytics' parser is already imported."""
    if _TARGET in sys.modules:
        _install(sys.modules[_TARGET])
    elif not any(isinstance(f, _TasksFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TasksFinder())


activate()
