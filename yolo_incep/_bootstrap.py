"""Run from yolo_incep.pth at interpreter start-up: install the plugin once Ultralytics imports its model parser, and
the lookup of our dataset YAMLs by name once it imports its dataset checks.

Imports only `sys` (not even importlib.abc: finders and loaders are duck-typed), so unrelated Python start-up
stays as fast as before (no torch, no ultralytics).
"""

from __future__ import annotations

import sys

# module -> the yolo_incep.plugin function that patches it right after it executes
_TARGETS = {"ultralytics.nn.tasks": "install", "ultralytics.data.utils": "install_data"}


def _install(module) -> None:
    """Patch `module`; a failure warns instead of breaking every Ultralytics import in this interpreter."""
    try:
        from yolo_incep import plugin

        getattr(plugin, _TARGETS[module.__name__])(module)
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
    """Finds nothing itself; wraps the loader of each module of _TARGETS found by the finders after it."""

    def __init__(self, pending: set[str]):
        self.pending = pending

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        sys.meta_path.remove(self)  # the other finders must not see us, and once all are found neither must anyone
        try:
            for finder in sys.meta_path:
                spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
                if spec is not None:
                    if spec.loader is not None:
                        spec.loader = _PatchingLoader(spec.loader)
                    return spec
            return None
        finally:
            if self.pending:
                sys.meta_path.insert(0, self)


def activate() -> None:
    """Install the finder for the modules not imported yet; patch those already imported."""
    pending = set()
    for name in _TARGETS:
        if name in sys.modules:
            _install(sys.modules[name])
        else:
            pending.add(name)
    if pending and not any(isinstance(f, _TasksFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TasksFinder(pending))


activate()
