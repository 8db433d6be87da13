"""Training: the one loop, the frozen-prefix cache, SetFit's contrastive tuning."""

from .loop import TrainConfig, TrainRecord, predict_logits, train
from .model import TextClassificationModel
from .prefix import compute_prefix_states

__all__ = ["TextClassificationModel", "TrainConfig", "TrainRecord", "compute_prefix_states", "predict_logits",
           "train"]
