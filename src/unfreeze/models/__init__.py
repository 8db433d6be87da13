"""Models: the offline catalog, backbone access across families, pooling."""

from .backbone import Backbone, Encoded, find_blocks, split_inputs
from .catalog import CATALOG, DEFAULT_MODEL, install_model, resolve_model
from .pooling import POOLINGS, check_pooling, parse_layers, pool, resolve_pooling

__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "POOLINGS",
    "Backbone",
    "Encoded",
    "check_pooling",
    "find_blocks",
    "install_model",
    "parse_layers",
    "pool",
    "resolve_model",
    "resolve_pooling",
    "split_inputs",
]
