"""Multi-head bundles (one frozen backbone, many heads) and the HTTP prediction service."""

from .multihead import DEFAULT_HEAD, Head, MultiHeadClassifier, add_heads, remove_head

__all__ = ["DEFAULT_HEAD", "Head", "MultiHeadClassifier", "add_heads", "remove_head"]
