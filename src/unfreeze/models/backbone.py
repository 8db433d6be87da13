"""Uniform access to a pretrained transformer: tokenizer, blocks, hidden states, pooling.

Works across families by finding the ordered list of attention blocks in the model
(``encoder.layer`` for BERT/RoBERTa/MPNet/DeBERTa, ``transformer.layer`` for DistilBERT,
``h`` for GPT-2, ``layers`` for Llama-style decoders).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UnfreezeError
from ..machine.deadline import check_deadline
from ..machine.devices import resolve_device
from .catalog import resolve_model_source

# where families keep their blocks, tried in order on the loaded base model
BLOCK_PATHS = (
    "encoder.layer",
    "transformer.layer",
    "h",
    "layers",
    "decoder.layers",
    "encoder.layers",
    "transformer.h",
    "model.layers",
    "gpt_neox.layers",
)
DECODER_TYPES = {
    "gpt2",
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gpt_neox",
    "opt",
    "phi",
    "phi3",
    "gemma",
    "gemma2",
    "smollm3",
    "olmo",
    "falcon",
    "gptj",
    "bloom",
}

# modules after the last block, by their attribute name on the base model
POST_MODULE_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f", "pooler")

TextInput = str | tuple[str, str]

# Texts longer than this many characters per allowed token are cut before tokenising
# (no tokenizer makes a token of fewer than one character on average over a long text,
# so the cut, grown until it holds enough tokens, starts at a few characters per token).
CUT_CHARS_PER_TOKEN = 16
CUT_MIN_CHARS = 4096
CUT_BOUNDARY_WINDOW = 1000  # how far past the cut a word boundary is looked for
_WORD_END = re.compile(r"(?<=\S)\s")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """The ordered attention blocks of ``model``; an error naming its class when none are found."""
    for path in BLOCK_PATHS:
        module: object = model
        for attr in path.split("."):
            module = getattr(module, attr, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return module
    raise UnfreezeError(
        f"Cannot find the attention blocks of {type(model).__name__}: none of {', '.join(BLOCK_PATHS)} is a "
        "list of modules. unfreeze supports BERT, RoBERTa, DistilBERT, MPNet, DeBERTa-v2, GPT-2 and Llama-style models."
    )


@dataclass
class Encoded:
    """Tokenised inputs, unpadded: one list of ids per example (plus token types where the model uses them)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    n_truncated: int
    max_length: int
    truncated: list[bool] | None = None  # per example, when known

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def n_tokens(self) -> int:
        return sum(self.lengths)

    def subset(self, indices: Iterable[int]) -> Encoded:
        idx = [int(i) for i in indices]
        types = None if self.token_type_ids is None else [self.token_type_ids[i] for i in idx]
        flags = None if self.truncated is None else [self.truncated[i] for i in idx]
        n_truncated = sum(flags) if flags is not None else 0
        return Encoded([self.input_ids[i] for i in idx], types, n_truncated, self.max_length, flags)


class Backbone:
    """A loaded base model and its tokenizer, with its blocks located."""

    def __init__(self, model: nn.Module, tokenizer, reference: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.reference = reference
        self.blocks = find_blocks(model)
        config = model.config
        self.family: str = getattr(config, "model_type", type(model).__name__)
        architectures = getattr(config, "architectures", None) or []
        self.is_decoder = bool(
            self.family in DECODER_TYPES or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
        )
        if tokenizer.pad_token_id is None:
            # decoders often have no pad token; padding is masked out, so any id works: use the end token
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        self._uses_token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
        self._fingerprint: str | None = None

    @classmethod
    def load(cls, reference: str, device: str | torch.device | None = None) -> Backbone:
        """Load a catalog name, local folder or hub id as a base model (no task head).

        The device and the reference are checked first, before transformers is imported:
        a device that is not here (``cuda`` on a CPU-only build, ``gpu``) or a name that
        cannot load (a missing folder, a hub id while offline) is refused at once.
        """
        if device is not None:
            resolve_device(device)  # one line listing the devices that exist, for any other name
        resolved = resolve_model_source(reference)
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        source = resolved.location
        # offline, a cached hub id must not make transformers retry the network for a minute
        options: dict[str, Any] = {"local_files_only": True} if resolved.local_files_only else {}
        # transformers' loading bars and notes on unused checkpoint weights are noise for our users
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        _refuse_pickled_weights(reference, source)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **options)
            # safetensors only: a pickle-format checkpoint (pytorch_model.bin) is never opened,
            # whatever torch's own default for unpickling is
            model = AutoModel.from_pretrained(source, use_safetensors=True, **options)
        except OSError as exc:
            raise UnfreezeError(
                f"Could not load model {reference!r}: {str(exc).splitlines()[0]} Give a catalog name "
                "(`unfreeze models`), a local model folder, or a hub id while online."
            ) from exc
        if any(p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()):
            # transformers >= 5 loads a checkpoint in its stored dtype (many hub models are bf16): the base is
            # fp32, as training with fp32 weights and AdamW state assumes; --precision decides what runs in bf16
            model.float()
        model.eval()
        from ..training.distributed import local_device

        # under accelerate launch / torchrun each rank takes the GPU of its local rank
        model.to(local_device(device) or default_device())
        return cls(model, tokenizer, reference)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def hidden_size(self) -> int:
        config: Any = self.model.config  # a transformers config: the size's name differs by family
        return int(getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or config.dim)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def length_limit(self, requested: int) -> int:
        """``requested``, capped by what the tokenizer and position embeddings allow."""
        caps = [requested]
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 100_000:
            caps.append(tok_max)
        positions = getattr(self.model.config, "max_position_embeddings", None) or getattr(
            self.model.config, "n_positions", None
        )
        if positions:
            # RoBERTa-style models offset positions by padding_idx + 1
            offset = 2 if self.family in {"roberta", "xlm-roberta", "camembert", "mpnet"} else 0
            caps.append(int(positions) - offset)
        return max(1, min(caps))

    def fingerprint(self) -> str:
        """A hash of the weights (names, shapes and values): the model part of cache keys."""
        if self._fingerprint is None:
            digest = hashlib.blake2b(digest_size=16)
            digest.update(type(self.model).__name__.encode())
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(name.encode())
                digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
                digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def encode(self, inputs: Sequence[TextInput], max_length: int) -> Encoded:
        """Tokenise without padding; texts over ``max_length`` tokens are truncated and counted.

        A text far longer than the limit is cut before tokenising (see ``_cut_long``), so
        time and memory stay bounded by ``max_length`` however long it is, while its first
        tokens and the truncation count come out as if it had been tokenised whole.
        """
        limit = self.length_limit(max_length)
        texts, pairs = split_inputs(inputs)
        texts, pairs = self._cut_long(texts, pairs, limit)
        args = (texts,) if pairs is None else (texts, pairs)
        full = self.tokenizer(*args, truncation=False, padding=False, verbose=False)
        flags = [len(ids) > limit for ids in full["input_ids"]]
        n_truncated = sum(flags)
        if n_truncated:
            full = self.tokenizer(*args, truncation=True, max_length=limit, padding=False)
        token_types = full.get("token_type_ids") if self._uses_token_types else None
        return Encoded(full["input_ids"], token_types, n_truncated, limit, flags)

    def _content_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])

    def _cut_long(self, texts: list[str], pairs: list[str] | None, limit: int) -> tuple[list[str], list[str] | None]:
        """Replace every text of more than ``CUT_CHARS_PER_TOKEN * limit`` characters by a prefix.

        The prefix ends at a word boundary (before a whitespace character), so the words
        before it are pre-tokenised exactly as in the whole text, and it is grown (doubled)
        until it alone holds more than ``limit`` tokens: then the whole text is truncated
        too, and its first ``limit`` tokens are the prefix's. A text that never reaches
        that (mostly whitespace, or one giant "word") ends up tokenised whole, which costs
        little because it yields few tokens. Texts under the threshold are untouched.

        For a sentence pair, a cut side also keeps more tokens than the other side, so that
        truncation (longest first) trims the same side as it would have. When both sides
        are cut, the one with more characters keeps more tokens: should the other one hold
        more tokens in full, the one odd token of the split goes to the other side.
        """
        budget = max(CUT_CHARS_PER_TOKEN * limit, CUT_MIN_CHARS)
        if pairs is None:
            return [self._prefix(t, limit, budget) if len(t) > budget else t for t in texts], None
        firsts, seconds = [], []
        for first, second in zip(texts, pairs):
            long_first, long_second = len(first) > budget, len(second) > budget
            if long_first and long_second:
                # the side with more characters, almost surely the one with more tokens, keeps more
                if len(first) >= len(second):
                    second = self._prefix(second, limit, budget)
                    first = self._prefix(first, max(limit, self._content_tokens(second)), budget)
                else:
                    first = self._prefix(first, limit, budget)
                    second = self._prefix(second, max(limit, self._content_tokens(first)), budget)
            elif long_first:
                first = self._prefix(first, max(limit, self._content_tokens(second)), budget)
            elif long_second:
                second = self._prefix(second, max(limit, self._content_tokens(first)), budget)
            firsts.append(first)
            seconds.append(second)
        return firsts, seconds

    def _prefix(self, text: str, more_than: int, budget: int) -> str:
        """The shortest doubling of ``budget`` characters, cut at a word end, holding over ``more_than`` tokens."""
        cut = budget
        while cut < len(text):
            boundary = _WORD_END.search(text, cut, cut + CUT_BOUNDARY_WINDOW)
            end = boundary.start() if boundary else cut
            prefix = text[:end]
            if self._content_tokens(prefix) > more_than:
                return prefix
            cut *= 2
        return text

    def batches(
        self, encoded: Encoded, batch_size: int, order: Sequence[int] | None = None
    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """Yield (example indices, padded model inputs on the device), longest first by default."""
        if order is None:
            order = sorted(range(len(encoded)), key=lambda i: -len(encoded.input_ids[i]))
        for start in range(0, len(order), batch_size):
            check_deadline()  # the advisor's budget (no deadline outside it)
            idx = list(order[start : start + batch_size])
            yield idx, self.collate(encoded, idx)

    def collate(self, encoded: Encoded, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        """Right-pad the examples ``idx`` into model inputs on the device.

        Right padding keeps absolute positions right for decoders; pooling reads the
        mask, so it does not depend on the side.
        """
        width = max(len(encoded.input_ids[i]) for i in idx)
        input_ids = torch.full((len(idx), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        type_ids = encoded.token_type_ids
        types = torch.zeros((len(idx), width), dtype=torch.long) if type_ids else None
        for row, i in enumerate(idx):
            ids = encoded.input_ids[i]
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
            if types is not None and type_ids is not None:
                types[row, : len(ids)] = torch.tensor(type_ids[i])
        device = self.device
        batch = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
        if types is not None:
            batch["token_type_ids"] = types.to(device)
        return batch

    def post_modules(self) -> dict[str, nn.Module]:
        """Top-level modules that run after the last block (final norm, pooler)."""
        base = _unwrap(self.model)
        return {name: module for name, module in base.named_children() if name in POST_MODULE_NAMES}

    def parameter_groups(
        self,
    ) -> tuple[list[nn.Parameter], list[list[nn.Parameter]], list[nn.Parameter], list[nn.Parameter]]:
        """(embedding-side params, params of each block, final-norm params, pooler params).

        Embedding side is everything that is neither in a block nor after the last one:
        embeddings, and shared position tables such as DeBERTa's relative embeddings.
        """
        blocks = [list(block.parameters()) for block in self.blocks]
        post = self.post_modules()
        pooler = [p for name, m in post.items() if name == "pooler" for p in m.parameters()]
        final = [p for name, m in post.items() if name != "pooler" for p in m.parameters()]
        seen = {id(p) for group in blocks for p in group} | {id(p) for p in pooler + final}
        embedding_side = [p for p in _unwrap(self.model).parameters() if id(p) not in seen]
        return embedding_side, blocks, final, pooler


def _refuse_pickled_weights(reference: str, source: object) -> None:
    """A local model folder whose weights exist only in pickle format: say so, and how to convert them."""
    folder = Path(str(source))
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if pickled:
        raise UnfreezeError(
            f"Model folder {reference!r} holds its weights only in pickle format ({', '.join(pickled)}), which "
            "unfreeze never opens: unpickling can run code. Convert it to safetensors where you trust the file "
            "(model.save_pretrained(folder, safe_serialization=True)), or use a model published as safetensors."
        )


def _unwrap(model: nn.Module) -> nn.Module:
    """The transformers base model, also when PEFT wraps it."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def split_inputs(inputs: Sequence[TextInput]) -> tuple[list[str], list[str] | None]:
    """Split X into texts and, for sentence-pair tasks, second texts."""
    if len(inputs) and isinstance(inputs[0], (tuple, list)):
        return [str(x[0]) for x in inputs], [str(x[1]) for x in inputs]
    return [str(x) for x in inputs], None
