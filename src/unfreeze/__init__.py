"""unfreeze: how much of a pretrained transformer should you train?

The top level imports lazily: ``unfreeze.report``, the data tools, the strategies and the
training settings load without torch.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import sys
from typing import ClassVar


def _version() -> str:
    """The installed distribution's version: pyproject.toml's `version` is its one source."""
    try:
        return importlib.metadata.version("unfreeze")
    except importlib.metadata.PackageNotFoundError:
        # a source tree put on sys.path without installing it: read the version where it is kept
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "0+unknown"
        return str(project["version"]) if project.get("name") == "unfreeze" else "0+unknown"


__version__ = _version()

_EXPORTS = {
    "Classifier": ".estimators",
    "Regressor": ".estimators",
    "Task": ".tasks",
    "SingleLabel": ".tasks",
    "MultiLabel": ".tasks",
    "Regression": ".tasks",
    "MultiHeadClassifier": ".inference.multihead",
    "load_estimator": ".inference.classifier_bundle",
    "Training": ".training.settings",
    "Strategy": ".strategies",
    "TunedStrategy": ".strategies",
    "Features": ".strategies",
    "Freeze": ".strategies",
    "Full": ".strategies",
    "Reinit": ".strategies",
    "Lora": ".strategies",
    "SetFit": ".strategies",
    "Truncate": ".strategies",
    "Gradual": ".strategies",
    "Mix": ".strategies",
    "BiLSTM": ".strategies",
    "Subspace": ".strategies",
    "register_strategy": ".strategies",
    "TextDataset": ".data",
    "load_data": ".data",
    "sample": ".data",
    "train_test_split": ".data",
    "UnfreezeError": ".errors",
    "classification_metrics": ".metrics",
    "SweepSpec": ".sweep",
    "load_results": ".notebook",
    "SweepResults": ".notebook",
    "run_advisor": ".notebook",
    "load_plan": ".notebook",
    "Plan": ".notebook",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    if f"{__name__}.{name}" in _MOVED:  # ``unfreeze.cache`` after a plain ``import unfreeze``, as before the move
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'unfreeze' has no attribute {name!r}")


# Modules that moved in 0.2 (the root package was a drawer of loose modules). Their old
# paths import the new module object, with a DeprecationWarning, for one release.
_MOVED = {
    "unfreeze.bundle": "unfreeze.inference.bundle",
    "unfreeze.predictors": "unfreeze.inference.predictors",
    "unfreeze.predict": "unfreeze.inference.bundle_predictor",
    "unfreeze.multihead": "unfreeze.inference.multihead",
    "unfreeze.classifier": "unfreeze.estimators",
    "unfreeze.embed": "unfreeze.features.embed",
    "unfreeze.token_states": "unfreeze.features.token_states",
    "unfreeze.pools": "unfreeze.features.pools",
    "unfreeze.probe": "unfreeze.features.probe",
    "unfreeze.heads": "unfreeze.features.logistic",
    "unfreeze.cache": "unfreeze.storage.cache",
    "unfreeze.outputs": "unfreeze.storage.outputs",
    "unfreeze.cores": "unfreeze.machine.cores",
    "unfreeze.devices": "unfreeze.machine.devices",
    "unfreeze.hardware": "unfreeze.machine.hardware",
    "unfreeze.deadline": "unfreeze.machine.deadline",
    "unfreeze.export.bundles": "unfreeze.export.exporter",
    "unfreeze.export.predictor": "unfreeze.export.onnx_predictor",
    "unfreeze.training.frozen_heads": "unfreeze.training.state_networks",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a moved module's old path as the new module itself (the same object, one set of globals)."""

    _specs: ClassVar[dict[str, importlib.machinery.ModuleSpec | None]] = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        import warnings

        new = _MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; the old path goes in the next release", DeprecationWarning, stacklevel=2
        )
        module = importlib.import_module(new)
        self._specs[spec.name] = module.__spec__  # the import system overwrites __spec__; exec_module restores it
        return module

    def exec_module(self, module):
        module.__spec__ = self._specs.pop(module.__spec__.name)

    def get_code(self, fullname):
        """``python -m`` an old path: code that runs the moved module as ``__main__`` (its relative imports
        need its own package, which the old path's is not)."""
        import warnings

        new = _MOVED[fullname]
        warnings.warn(
            f"{fullname} moved to {new}; the old path goes in the next release", DeprecationWarning, stacklevel=2
        )
        return compile(
            f"import runpy\nrunpy.run_module({new!r}, run_name='__main__', alter_sys=True)\n",
            f"<{fullname}: moved to {new}>",
            "exec",
        )


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())
