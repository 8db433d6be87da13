"""One predictor behind ``unfreeze predict`` and the HTTP service: any bundle as named heads.

A multi-head or features bundle is a :class:`~unfreeze.multihead.MultiHeadClassifier` (one
forward pass for every head); a fine-tuned bundle is its one head, named ``default``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bundle import SINGLE_KIND, read_config
from .classifier import Classifier
from .errors import UnfreezeError
from .multihead import DEFAULT_HEAD, MultiHeadClassifier


class BundlePredictor:
    """A loaded bundle: ``heads`` (name -> labels, pooling, layers, strategy) and probabilities per head."""

    def __init__(self, path: str | Path, device: str | None = None, batch_size: int | None = None,
                 progress: bool = False) -> None:
        path = Path(path)
        config = read_config(path)
        tuned = config.get("kind") == SINGLE_KIND and (
            config["predictor"].get("type") != "embedding_head" or config["predictor"].get("tuned"))
        self.single_head = config.get("kind") == SINGLE_KIND  # its head is 'default'
        self.suite: MultiHeadClassifier | None = None
        self.classifier: Classifier | None = None
        if tuned:
            # a fine-tuned backbone belongs to its one head, served as 'default'
            clf = Classifier.load(path, device=device)
            clf.predictor_.progress = progress
            if batch_size is not None:
                clf.predictor_.batch_size = batch_size
            self.classifier = clf
            self.model = str(clf.model)
            self.max_length = clf.max_length_
            self.heads = {DEFAULT_HEAD: {"name": DEFAULT_HEAD, "labels": clf.classes_.tolist(),
                                         "pooling": clf.pooling_, "layers": list(clf.layers_),
                                         "strategy": clf.strategy_.name}}
        else:
            suite = MultiHeadClassifier.load(path, device=device)
            suite.progress = progress
            if batch_size is not None:
                suite.batch_size = batch_size
            self.suite = suite
            self.model = str(suite.model)
            self.max_length = suite.backbone.length_limit(suite.max_length)
            self.heads = {name: {"name": name, "labels": head.classes.tolist(), "pooling": head.pooling,
                                 "layers": list(head.layers), "strategy": "features"}
                          for name, head in suite.heads.items()}

    def check_heads(self, heads: list[str] | None) -> list[str]:
        """The heads asked for (all when None), each known; an unknown one is a one-line error."""
        if not heads:
            return list(self.heads)
        unknown = [h for h in heads if h not in self.heads]
        if unknown:
            if self.single_head:
                raise UnfreezeError(f"This is a single-head bundle; its one head is called 'default', "
                                    f"not {unknown[0]!r}.")
            raise UnfreezeError(f"Unknown head {unknown[0]!r}; this bundle has: {', '.join(self.heads)}.")
        return list(dict.fromkeys(heads))

    def predict_proba(self, texts: list, heads: list[str] | None = None) -> dict[str, np.ndarray]:
        """Probabilities per head (columns in the order of that head's labels), one forward pass."""
        names = self.check_heads(heads)
        if self.suite is not None:
            return self.suite.predict_proba(texts, names)
        proba = self.classifier.predict_proba(texts)
        return {name: proba for name in names}
