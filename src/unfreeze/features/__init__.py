"""Features of the frozen model: pooled embeddings and their cache, token states, probes, logistic heads.

- ``embed``: pooled hidden states with no gradients, cached on disk by weights and inputs;
- ``token_states``: every token's states of a few layers, for heads that read sequences;
- ``pools``: in-memory pools a sweep shares forward passes through;
- ``probe``: one forward pass, a head fitted on every layer;
- ``logistic``: the logistic head on pooled features (safetensors + JSON).

Modules load on first use: importing this package imports no torch.
"""
