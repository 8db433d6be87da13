"""The package layout: moved modules keep their old import paths for one release, as the same object."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import unfreeze

SRC = Path(unfreeze.__file__).parent


@pytest.mark.parametrize("old, new", sorted(unfreeze._MOVED.items()))
def test_an_old_path_imports_the_moved_module_and_warns(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        moved = importlib.import_module(old)
    assert moved is importlib.import_module(new)
    assert moved.__spec__.name == new  # the real module's spec, not the alias's
    assert sys.modules[old] is moved


def test_no_file_is_left_at_an_old_path():
    for old in unfreeze._MOVED:
        assert not (SRC.parent / (old.replace(".", "/") + ".py")).exists(), old


def test_old_from_imports_and_attributes_still_work():
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "from unfreeze import Classifier, MultiHeadClassifier\n"
        "try:\n    from unfreeze.classifier import Classifier as Old\nexcept DeprecationWarning:\n    pass\n"
        "else:\n    raise SystemExit('no warning')\n"
        "warnings.simplefilter('ignore', DeprecationWarning)\n"
        "from unfreeze.classifier import Classifier as Old\n"
        "import unfreeze\n"
        "assert Old is Classifier and unfreeze.cache is unfreeze.storage.cache\n"
        "from unfreeze.export.bundles import export_bundle\n"
        "from unfreeze.export.exporter import export_bundle as new\n"
        "assert export_bundle is new\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_m_an_old_path_runs_the_moved_module():
    old = subprocess.run([sys.executable, "-m", "unfreeze.hardware"], capture_output=True, text=True, check=True)
    new = subprocess.run(
        [sys.executable, "-m", "unfreeze.machine.hardware"], capture_output=True, text=True, check=True
    )
    assert old.stdout == new.stdout and "bf16" in new.stdout
