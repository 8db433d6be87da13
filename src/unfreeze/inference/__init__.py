"""Fitted predictors and what they are saved in and predicted with.

- ``bundle``: the bundle format (a folder of JSON + safetensors), a leaf every loader reads;
- ``predictors``: what a strategy's fit returns and a bundle stores (``Predictor`` and its kinds);
- ``multihead``: many logistic heads on one frozen backbone (``MultiHeadClassifier``);
- ``bundle_predictor``: any bundle as named heads, behind ``unfreeze predict`` and the service.

Modules load on first use: importing this package imports no torch.
"""
