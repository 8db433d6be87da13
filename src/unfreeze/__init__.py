"""unfreeze: how much of a pretrained transformer should you train?"""

__version__ = "0.1.0"

from .classifier import Classifier  # noqa: E402
from .data import TextDataset, load_data, sample, train_test_split  # noqa: E402
from .errors import UnfreezeError  # noqa: E402
from .metrics import classification_metrics  # noqa: E402

__all__ = [
    "Classifier",
    "TextDataset",
    "UnfreezeError",
    "__version__",
    "classification_metrics",
    "load_data",
    "sample",
    "train_test_split",
]
