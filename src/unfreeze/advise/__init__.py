"""The advisor: within a time budget, which configuration to train, how well it will do, what it costs.

``halving`` spends the budget (successive halving over rungs of growing training size,
every cell's rate tuned on its validation split), ``curves`` extrapolates scores to the
full data, ``cost`` predicts fit time, prediction time and memory, ``plan`` ranks the
configurations and writes the answer. Importing this package loads no torch.
"""
