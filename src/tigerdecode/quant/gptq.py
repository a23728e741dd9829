"""GPTQ (Frantar et al., 2022) for int4 groups: quantize columns one at a time and push each
column's error onto the not-yet-quantized columns through the inverse Hessian of the layer's
inputs, so the layer's *outputs* on real text move less than with round-to-nearest.

This is the one-shot variant: every layer's Hessian ``H = 2 XᵀX / n`` is collected in a single
pass of the float model over the calibration text (hooks on the layers' inputs), then each layer is
quantized independently. Written from the paper's algorithm (lazy block updates, Cholesky of H⁻¹).
"""

from __future__ import annotations

import torch
from torch import nn

from tigerdecode.kernels.packing import SCALE_DTYPE, PackedWeight, check_shape, pack_int4


class HessianCollector:
    """Forward pre-hooks that accumulate ``XᵀX`` of each named layer's input.

    Layers fed the very same tensor in a forward (q/k/v, gate/up) share one accumulator.
    """

    def __init__(self, model: nn.Module, names: list[str]):
        self.h: dict[str, torch.Tensor] = {}
        self.n: dict[str, int] = {}
        self.alias: dict[str, str] = {}
        self._seen: dict[int, tuple[torch.Tensor, str]] = {}  # id(input) -> (input, first layer)
        self._hooks = [model.get_submodule(n).register_forward_pre_hook(self._hook(n))
                       for n in names]

    def _hook(self, name):
        def fn(_module, args):
            x = args[0]
            seen = self._seen.get(id(x))
            if seen is not None and seen[0] is x:
                self.alias[name] = seen[1]
                return
            self._seen[id(x)] = (x, name)  # the reference keeps id(x) unique until end_batch
            x2 = x.detach().reshape(-1, x.shape[-1]).to(torch.float32).cpu()  # (T, K)
            if name not in self.h:
                self.h[name] = torch.zeros(x2.shape[1], x2.shape[1])
                self.n[name] = 0
            self.h[name].addmm_(x2.t(), x2)
            self.n[name] += x2.shape[0]
        return fn

    def end_batch(self) -> None:
        self._seen.clear()

    def hessian(self, name: str) -> torch.Tensor | None:
        """``2 XᵀX / n`` for a layer's input (None when the layer never ran)."""
        key = self.alias.get(name, name)
        if key not in self.h:
            return None
        return 2.0 * self.h[key] / max(self.n[key], 1)

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._seen.clear()


@torch.no_grad()
def collect_hessians(model: nn.Module, names: list[str], batches, progress: bool = False):
    """Run ``model`` over ``batches`` (each a (1, T) id tensor) and return the collector."""
    col = HessianCollector(model, names)
    it = batches
    if progress:
        from tqdm import tqdm

        it = tqdm(batches, desc="calibration", unit="seq")
    try:
        for ids in it:
            model(ids.to(next(model.parameters()).device))
            col.end_batch()
    finally:
        col.remove()
    return col


def _group_params(w: torch.Tensor, zero_mode: str):
    """Asymmetric int4 (scale, zero) per row for a (N, G) slice of columns."""
    wmin, wmax = w.amin(dim=1), w.amax(dim=1)
    if zero_mode == "int":
        wmin, wmax = wmin.clamp(max=0.0), wmax.clamp(min=0.0)
    scale = ((wmax - wmin) / 15.0).to(SCALE_DTYPE).to(torch.float32)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    if zero_mode == "int":
        zero = torch.round(-wmin / scale).clamp(0, 15)
    else:
        zero = wmin.to(SCALE_DTYPE).to(torch.float32)
    return scale, zero  # (N,), (N,)


@torch.no_grad()
def gptq_int4(weight: torch.Tensor, H: torch.Tensor, group_size: int = 128,
              block: int = 128, damp: float = 0.01, zero_mode: str = "int") -> PackedWeight:
    """Quantize ``weight`` (N, K) to int4 groups of ``group_size`` along K with GPTQ."""
    N, K = weight.shape
    check_shape(4, group_size, K)
    W = weight.detach().to(torch.float32).clone()  # (N, K)
    H = H.to(torch.float32).clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += damp * torch.diag(H).mean() * torch.eye(K)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    block = max(group_size, block - block % group_size)  # blocks hold whole groups
    Q = torch.zeros(K, N, dtype=torch.int32)  # codes, (K, N) as pack_int4 wants
    scales = torch.zeros(K // group_size, N)
    zeros = torch.zeros(K // group_size, N)
    for i1 in range(0, K, block):
        i2 = min(i1 + block, K)
        W1 = W[:, i1:i2].clone()  # (N, B)
        Err = torch.zeros_like(W1)
        Hb = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if col % group_size == 0:  # new group: its range from the error-updated weights
                s, z = _group_params(W1[:, i:i + group_size], zero_mode)
                scales[col // group_size], zeros[col // group_size] = s, z
            w = W1[:, i]
            if zero_mode == "int":
                q = torch.round(w / s + z).clamp(0, 15)
                deq = (q - z) * s
            else:
                q = torch.round((w - z) / s).clamp(0, 15)
                deq = q * s + z
            Q[col] = q.to(torch.int32)
            err = (w - deq) / Hb[i, i]
            W1[:, i:] -= err[:, None] * Hb[i, i:][None, :]
            Err[:, i] = err
        W[:, i2:] -= Err @ Hinv[i1:i2, i2:]
    return PackedWeight(bits=4, group_size=group_size, in_features=K, out_features=N,
                        qweight=pack_int4(Q), scales=scales.to(SCALE_DTYPE).contiguous(),
                        zeros=zeros.to(torch.uint8 if zero_mode == "int" else SCALE_DTYPE)
                        .contiguous(), zero_mode=zero_mode)


def calibration_batches(tokenizer, text: str, n_seqs: int = 32, seq_len: int = 512):
    """Up to ``n_seqs`` consecutive (1, seq_len) windows of ``text``'s tokens."""
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    return [ids[i:i + seq_len][None] for i in range(0, len(ids) - seq_len + 1, seq_len)][:n_seqs]


def default_calibration_text() -> str:
    """Calibration text that is not the held-out text: CPython's own documentation topics
    (``pydoc_data.topics``, shipped with Python), English prose with code."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))
