"""The package's metadata: one version, an SPDX license, a changelog entry, format versions named as such."""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib
from pathlib import Path

import pytest
from packaging.licenses import canonicalize_license_expression

import unfreeze
from unfreeze.errors import UnfreezeError

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_version_is_the_installed_distributions_and_pyprojects():
    # one source: pyproject.toml's version, read back through the installed metadata (a stale
    # editable install, or a second hand-kept copy in the code, would differ)
    assert unfreeze.__version__ == importlib.metadata.version("unfreeze")
    assert unfreeze.__version__ == PYPROJECT["project"]["version"]


def test_a_source_tree_that_is_not_installed_reads_pyprojects_version(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert unfreeze._version() == PYPROJECT["project"]["version"]


def test_license_is_an_spdx_expression():
    # the table form ({text = ...}) is deprecated and prints a warning box on every install
    license = PYPROJECT["project"]["license"]
    assert isinstance(license, str)
    assert canonicalize_license_expression(license) == license == "Apache-2.0"
    assert importlib.metadata.metadata("unfreeze")["License-Expression"] == license


def test_the_changelog_has_a_section_for_this_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## \[([^\]]+)\]", changelog, flags=re.M)
    assert sections[0] == "Unreleased"
    assert unfreeze.__version__ in sections


def test_a_newer_export_names_the_export_format_not_the_package_version(tmp_path):
    from unfreeze.export.manifest import FORMAT, FORMAT_VERSION, MANIFEST_FILE, read_manifest

    newer = FORMAT_VERSION + 1
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"format": FORMAT, "format_version": newer}))
    too_new = rf"is in export format {newer}; .* export formats up to {FORMAT_VERSION}\."
    with pytest.raises(UnfreezeError, match=too_new):
        read_manifest(tmp_path)
