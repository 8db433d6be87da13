"""Random subspaces of a model's weights: weights = pretrained + P·theta, P a D x d random projection.

Li et al. 2018 ("Measuring the intrinsic dimension of objective landscapes") and
Aghajanyan et al. 2020 ("Intrinsic dimensionality explains the effectiveness of language
model fine-tuning"). Only theta (d numbers) trains; P is fixed, drawn from a seed, and
never stored: it is regenerated from the seed when a bundle is loaded.

The projection P (D rows: every projected weight, tensor after tensor; d columns):

- ``FastfoodProjection`` (Le et al. 2013, "Fastfood: approximating kernel expansions in
  loglinear time"): with n = 2^ceil(log2 d), P stacks ceil(D / n) independent n x n blocks
  ``V_b = (1/sqrt(n)) S_b H G_b Pi_b H B`` and keeps the first D rows and d columns. H is
  the (unnormalised) Walsh-Hadamard matrix, applied by a fast transform (``fwht``); B is a
  diagonal of random signs, Pi_b a random permutation, G_b a diagonal of standard normals,
  S_b = diag(s_i / ||G_b||) with s_i ~ chi(n). Every block's rows then have the norms of
  rows of i.i.d. N(0, 1) numbers and its entries are (nearly) N(0, 1) (Le et al.'s
  construction; stacking blocks when the output is larger than the input is theirs too).
  B is shared by the blocks (so ``H B theta`` is computed once, on n numbers); Pi_b, G_b
  and S_b are each block's own. Applying P or P^T costs O(D log n) time, and the
  randomness 12 bytes per projected weight; a D x d matrix is never formed.
- ``DenseProjection``: the D x d matrix itself, i.i.d. N(0, 1) entries. For tiny models
  (D x d up to ``DENSE_LIMIT`` numbers) and as the test oracle of the fast one.

Both scale the rows of each projected tensor by 1/sqrt(D_i) (D_i: the tensor's size), so
each tensor's block of P has columns of expected unit norm, as in Aghajanyan et al.'s
implementation (which draws one Fastfood transform per tensor, each with unit-norm
columns): a small tensor (a bias, a norm's gain) moves as far per unit of theta as a
large matrix. With SAID (structure-aware intrinsic dimension) each projected tensor i also
has a learned scale lambda_i (initialised to 1): W_i = W_i0 + lambda_i (P theta)_i.

``attach_subspace`` installs this on a model with ``torch.nn.utils.parametrize``: every
projected weight becomes ``W0 + lambda_i * (P theta)_i``, computed when the model reads it.
P·theta is computed once per forward pass of the model (and, without gradients, once per
value of theta), not once per weight.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

# a dense projection holds D x d float32 numbers: allowed up to this many (64 MiB)
DENSE_LIMIT = 16_000_000
# Kronecker factors of the Walsh-Hadamard transform are applied as small matrix products:
# on CPUs a few passes of a 16..32-wide matmul beat log2(n) passes of additions
_MAX_FACTOR_BITS = 5
# separates the projection's random stream from any other use of the same seed
_STREAM = 0x5355_4253  # "SUBS"

_HADAMARD: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def hadamard(m: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The m x m Walsh-Hadamard matrix in Sylvester's (natural) order, entries +-1 (m a power of 2)."""
    key = (m, dtype, torch.device(device))
    if key not in _HADAMARD:
        h = torch.ones(1, 1, dtype=torch.float64)
        while h.shape[0] < m:
            h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
        _HADAMARD[key] = h.to(dtype=dtype, device=device)
    return _HADAMARD[key]


def _factors(n: int) -> list[int]:
    """n = 2^k split into nearly equal power-of-2 factors of at most 2^_MAX_FACTOR_BITS."""
    k = n.bit_length() - 1
    if k == 0:
        return []
    parts = math.ceil(k / _MAX_FACTOR_BITS)
    return [2 ** (k // parts + (1 if i < k % parts else 0)) for i in range(parts)]


def fwht(x: torch.Tensor) -> torch.Tensor:
    """The unnormalised Walsh-Hadamard transform of every row of ``x`` (last dimension n, a power of 2).

    Equals ``x @ hadamard(n)`` in O(n log n) per row: H_n is the Kronecker product of
    small Hadamard matrices H_a (x) H_b (x) ..., so the transform is one small matrix
    product along each factor's axis of the row viewed as an a x b x ... array.
    """
    n = x.shape[-1]
    if n & (n - 1):
        raise ValueError(f"fwht needs a power-of-2 length, got {n}")
    sizes = _factors(n)
    rows = x.numel() // max(n, 1)
    y = x.reshape(rows, n)
    for t, m in enumerate(sizes):
        outer = rows * math.prod(sizes[:t])
        after = n // (math.prod(sizes[: t + 1]))
        h = hadamard(m, x.dtype, x.device)
        y = y.reshape(outer, m) @ h if after == 1 else torch.matmul(h, y.reshape(outer, m, after))
    return y.reshape(x.shape)


def _row_scales(sizes: Sequence[int]) -> np.ndarray:
    """1/sqrt(D_i) for every row of tensor i: each tensor's block of P gets columns of expected unit norm."""
    return np.repeat(1.0 / np.sqrt(np.asarray(sizes, dtype=np.float64)), sizes).astype(np.float32)


def projection_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([_STREAM, int(seed)])


class Projection(nn.Module):
    """A fixed D x d linear map, drawn from a seed. ``forward(theta)`` -> P·theta (D numbers)."""

    kind = ""

    def __init__(self, sizes: Sequence[int], d: int, seed: int) -> None:
        super().__init__()
        self.sizes = [int(s) for s in sizes]
        self.D = int(sum(self.sizes))
        self.d = int(d)
        self.seed = int(seed)

    def digest(self) -> str:
        """A hash of the projection's random numbers: a regenerated P must equal the saved one."""
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.kind}:{self.D}:{self.d}:{self.seed}".encode())
        for name, buffer in sorted(self.named_buffers()):
            h.update(name.encode())
            h.update(buffer.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def matrix(self) -> torch.Tensor:
        """P as a dense D x d matrix (tests and tiny sizes only): P applied to each unit vector."""
        with torch.no_grad():
            eye = torch.eye(self.d, device=self._device())
            return torch.stack([self(eye[j]) for j in range(self.d)], dim=1)

    def _device(self) -> torch.device:
        return next(self.buffers()).device


class FastfoodProjection(Projection):
    """P = R [V_1; V_2; ...][:D, :d], V_b = (1/sqrt(n)) S_b H G_b Pi_b H B: see the module's notes.

    B (random signs) is drawn once and shared by the blocks, so ``H B theta`` is computed
    once, on n numbers; each block has its own Pi_b, G_b and S_b, so given the fixed
    rotation H B / sqrt(n) the blocks are independent Fastfood blocks. Buffers (regenerated
    from the seed, never saved): ``signs`` (B, [n]), ``permutation`` (Pi_b of every block,
    int32 indices in [0, n), [blocks * n]), ``gauss`` (G, [blocks, n]) and ``scale`` (the
    diagonal of S with 1/sqrt(n) and the per-tensor row scale R, [D]): 12 bytes per
    projected weight.
    """

    kind = "fastfood"
    # buffers, declared for the type checker (nn.Module's attribute lookup returns Tensor | Module)
    signs: torch.Tensor
    permutation: torch.Tensor
    gauss: torch.Tensor
    scale: torch.Tensor

    def __init__(self, sizes: Sequence[int], d: int, seed: int) -> None:
        super().__init__(sizes, d, seed)
        self.n = 1 << max(0, (self.d - 1).bit_length())  # smallest power of 2 >= d
        self.blocks = math.ceil(self.D / self.n)
        n, blocks = self.n, self.blocks
        rng = projection_rng(seed)
        signs = rng.integers(0, 2, size=n).astype(np.float32) * 2 - 1
        index_type = np.int32 if n < 2**31 else np.int64
        permutation = rng.permuted(np.broadcast_to(np.arange(n, dtype=index_type), (blocks, n)), axis=1)
        gauss = rng.standard_normal((blocks, n), dtype=np.float32)
        chi = np.sqrt(
            2 * rng.standard_gamma(n / 2, size=(blocks, n), dtype=np.float32)
        )  # chi(n): chi2(n) = 2 Gamma(n/2)
        # S_b = diag(s / ||G_b||): with 1/sqrt(n), row i of V_b has norm s_i ~ chi(n), like a row of
        # n i.i.d. N(0, 1) numbers (||row i of H G_b Pi_b H B||^2 = n ||G_b||^2 exactly)
        block_norm = np.sqrt(np.square(gauss, dtype=np.float64).sum(axis=1, keepdims=True))
        # G_b = 0 happens (n = 1: one float32 normal that is exactly 0); its rows of P are 0, not 0 x inf
        block_norm[block_norm == 0] = np.inf
        scale = (chi / (block_norm * math.sqrt(n))).astype(np.float32).reshape(-1)[: self.D]
        scale *= _row_scales(self.sizes)
        self.register_buffer("signs", torch.from_numpy(signs), persistent=False)
        self.register_buffer(
            "permutation", torch.from_numpy(np.ascontiguousarray(permutation).reshape(-1)), persistent=False
        )
        self.register_buffer("gauss", torch.from_numpy(gauss), persistent=False)
        self.register_buffer("scale", torch.from_numpy(scale), persistent=False)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return _FastfoodFunction.apply(theta, self)

    def project(self, theta: torch.Tensor) -> torch.Tensor:
        """P theta, without autograd, right to left: B, H (on n numbers), then per block Pi_b, G_b, H, S_b."""
        n, blocks = self.n, self.blocks
        u = fwht(nn.functional.pad(theta, (0, n - self.d)) * self.signs)  # H B theta: n numbers
        x = u.index_select(0, self.permutation).view(blocks, n).mul_(self.gauss)  # G_b Pi_b, every block
        return fwht(x).view(-1)[: self.D].mul_(self.scale)  # H, then S_b, 1/sqrt(n) and the row scale

    def project_transposed(self, g: torch.Tensor) -> torch.Tensor:
        """P^T g (D numbers -> d), theta's gradient: the sum over blocks of B H Pi_b^T G_b H S_b g_b."""
        n, blocks = self.n, self.blocks
        y = g.new_zeros(blocks * n)
        torch.mul(g, self.scale, out=y[: self.D])
        y = fwht(y.view(blocks, n)).mul_(self.gauss).view(-1)
        # Pi_b^T of every block, summed over blocks: scatter-add back to the gathered positions
        u = g.new_zeros(n).index_add_(0, self.permutation, y)
        return (fwht(u) * self.signs)[: self.d]

    def dense_blocks(self) -> list[torch.Tensor]:
        """Each block V_b (scaled as in P) built from its definition with explicit matrices: the test oracle."""
        n = self.n
        h = hadamard(n, torch.float64)
        scale = torch.zeros(self.blocks * n, dtype=torch.float64)
        scale[: self.D] = self.scale.double().cpu()
        first = h @ torch.diag(self.signs.double().cpu())  # H B
        out = []
        for b in range(self.blocks):
            pi = torch.zeros(n, n, dtype=torch.float64)
            pi[torch.arange(n), self.permutation[b * n : (b + 1) * n].long().cpu()] = 1.0  # (Pi x)_i = x_pi(i)
            out.append(
                torch.diag(scale[b * n : (b + 1) * n]) @ h @ torch.diag(self.gauss[b].double().cpu()) @ pi @ first
            )
        return out


class _FastfoodFunction(torch.autograd.Function):
    """P theta with a hand-written backward (P^T g): no autograd graph over D-sized temporaries."""

    @staticmethod
    def forward(ctx, theta: torch.Tensor, projection: FastfoodProjection) -> torch.Tensor:
        ctx.projection = projection
        return projection.project(theta.detach())

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.projection.project_transposed(grad.contiguous()), None


class DenseProjection(Projection):
    """P itself: a D x d matrix of i.i.d. N(0, 1) numbers, rows of tensor i scaled by 1/sqrt(D_i). Tiny models only."""

    kind = "dense"
    weight: torch.Tensor  # a buffer

    def __init__(self, sizes: Sequence[int], d: int, seed: int) -> None:
        super().__init__(sizes, d, seed)
        if self.D * self.d > DENSE_LIMIT:
            raise ValueError(f"a dense projection of {self.D} x {self.d} exceeds {DENSE_LIMIT} numbers")
        rng = projection_rng(seed)
        matrix = rng.standard_normal((self.D, self.d), dtype=np.float32) * _row_scales(self.sizes)[:, None]
        self.register_buffer("weight", torch.from_numpy(matrix), persistent=False)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return self.weight @ theta


PROJECTIONS: dict[str, type[Projection]] = {"fastfood": FastfoodProjection, "dense": DenseProjection}


class Subspace(nn.Module):
    """The trained part: theta (d numbers, zeros at the start) and, with SAID, one scale per projected tensor.

    ``offsets()`` gives each projected tensor's ``(P theta)_i`` (the parametrization applies
    lambda_i). Under gradients P theta is computed once per forward pass of the model the
    subspace is attached to (``attach_subspace``); without gradients (prediction) once per
    value of theta, and kept until it changes.
    """

    def __init__(self, shapes: Sequence[torch.Size], d: int, kind: str, seed: int, said: bool) -> None:
        super().__init__()
        self.shapes = [torch.Size(s) for s in shapes]
        sizes = [s.numel() for s in self.shapes]
        self.projection = PROJECTIONS[kind](sizes, d, seed)
        self.theta = nn.Parameter(torch.zeros(d))
        self.said: nn.Parameter | None = nn.Parameter(torch.ones(len(sizes))) if said else None
        self._in_forward = False
        self._cache: tuple[tuple, list[torch.Tensor]] | None = None

    @property
    def D(self) -> int:
        return self.projection.D

    def _key(self) -> tuple:
        return (self.theta._version, self.theta.device, torch.is_grad_enabled(), torch.is_inference_mode_enabled())

    def offsets(self) -> list[torch.Tensor]:
        """(P theta) cut into the projected tensors' shapes (before SAID's scales)."""
        key = self._key()
        reuse = self._in_forward or not torch.is_grad_enabled()
        if reuse and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        # in float32 even under autocast: bf16 sums over the Hadamard factors would blur P theta
        with torch.autocast(self.theta.device.type, enabled=False):
            flat = self.projection(self.theta)
        pieces = [p.view(shape) for p, shape in zip(flat.split(self.projection.sizes), self.shapes)]
        # under gradients, keep them only for this forward pass (the graph is freed by backward)
        self._cache = (key, pieces) if reuse else None
        return pieces

    def begin_forward(self, *_args) -> None:
        self._in_forward = True
        if torch.is_grad_enabled():
            self._cache = None

    def end_forward(self, *_args) -> None:
        self._in_forward = False
        if torch.is_grad_enabled():
            self._cache = None  # the offsets' graph belongs to this pass alone


class _Shifted(nn.Module):
    """The parametrization of projected tensor i: W = W0 + lambda_i (P theta)_i (``W0 + (P theta)_i`` without SAID)."""

    subspace: Subspace

    def __init__(self, subspace: Subspace, index: int) -> None:
        super().__init__()
        # a plain attribute, not a submodule: the subspace is registered once, on the model
        object.__setattr__(self, "subspace", subspace)
        self.index = index

    def forward(self, base: torch.Tensor) -> torch.Tensor:
        offset = self.subspace.offsets()[self.index]
        said = self.subspace.said
        if said is None:
            return base + offset
        return torch.addcmul(base, offset, said[self.index : self.index + 1])


SUBSPACE_ATTRIBUTE = "unfreeze_subspace"


def attach_subspace(
    model: nn.Module, targets: Sequence[tuple[str, nn.Parameter]], d: int, kind: str, seed: int, said: bool
) -> Subspace:
    """Freeze ``model`` and make each named target parameter ``W0 + lambda_i (P theta)_i``; returns the subspace.

    The subspace (theta, SAID's scales, P's buffers) becomes the submodule
    ``unfreeze_subspace`` of ``model``, so it follows the model to a device and its
    parameters are the model's only trainable ones.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    subspace = Subspace([p.shape for _, p in targets], d, kind, seed, said).to(next(model.parameters()).device)
    modules = dict(model.named_modules())
    for index, (name, _param) in enumerate(targets):
        owner, _, attribute = name.rpartition(".")
        # unsafe: skips the registration-time check, which would compute P theta once per tensor
        parametrize.register_parametrization(modules[owner], attribute, _Shifted(subspace, index), unsafe=True)
    model.add_module(SUBSPACE_ATTRIBUTE, subspace)
    model.register_forward_pre_hook(subspace.begin_forward)
    model.register_forward_hook(subspace.end_forward)
    return subspace


def subspace_of(model: nn.Module) -> Subspace | None:
    found = getattr(model, SUBSPACE_ATTRIBUTE, None)
    return found if isinstance(found, Subspace) else None
