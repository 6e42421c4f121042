"""The torch pieces of the LSTM classifier: device and thread settings, seeding, the network, Adam.

torch is imported inside functions only, so importing this module stays cheap for the CLI.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

# Inference and validation run in chunks this large: big enough to keep the device busy, small enough
# that a (chunk, window, features) block never dominates memory.
EVAL_CHUNK = 8192


def resolve_device(device: str):
    """The torch device for ``device`` ("auto": CUDA when available, else CPU)."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def cpu_threads(num_threads: int | None, device):
    """Set torch's intra-op threads for the duration of a call (CPU only), then restore them."""
    import torch

    if num_threads is None or device.type != "cpu":
        yield
        return
    prev = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


@contextmanager
def seeded(seed: int, device):
    """Seed torch for one fit without leaking the seed or the determinism flag to the caller."""
    import torch

    if device.type != "cpu":
        # CPU needs no flag: every CPU kernel used here (LSTM, linear, gather, Adam) is deterministic,
        # and torch.use_deterministic_algorithms imports torch._inductor (4-5 s here) on first call.
        # warn_only: some CUDA kernels have no deterministic variant; train with a warning, not fail.
        prev = torch.are_deterministic_algorithms_enabled()
        prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
    finally:
        if device.type != "cpu":
            torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


def build_net(n_features: int, hidden: int, num_layers: int, dropout: float, n_classes: int):
    """The LSTM, dropout and linear head as one ``ModuleDict`` (see :func:`forward`)."""
    import torch.nn as nn

    # A ModuleDict rather than an nn.Module subclass: a subclass would need torch at import time (or be
    # defined in a function, which breaks pickling of fitted estimators).
    return nn.ModuleDict(
        {
            "lstm": nn.LSTM(
                n_features,
                hidden,
                num_layers=num_layers,
                batch_first=True,
                dropout=dropout if num_layers > 1 else 0.0,
            ),
            "drop": nn.Dropout(dropout),
            "head": nn.Linear(hidden, n_classes),
        }
    )


class Adam:
    """Adam (Kingma & Ba 2015) with L2 weight decay added to the gradient, as ``torch.optim.Adam`` does.

    Hand-written because constructing the first ``torch.optim`` optimizer in a process imports
    ``torch._dynamo`` (4-8 s measured on the 2-core dev machine), which would dominate small fits and
    the first fit of every CLI run. Same update as torch's single-tensor Adam (no amsgrad).
    """

    def __init__(self, params, lr: float, betas=(0.9, 0.999), weight_decay: float = 0.0, eps: float = 1e-8):
        import torch

        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.weight_decay, self.eps = lr, betas, weight_decay, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self) -> None:
        """Clear the gradients of the parameters."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        import torch

        self.t += 1
        b1, b2 = self.betas
        step_size = self.lr / (1 - b1**self.t)
        bc2_sqrt = math.sqrt(1 - b2**self.t)
        with torch.no_grad():
            for p, m, v in zip(self.params, self.m, self.v):
                g = p.grad
                if g is None:
                    continue
                if self.weight_decay:
                    g = g.add(p, alpha=self.weight_decay)
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                p.addcdiv_(m, (v.sqrt() / bc2_sqrt).add_(self.eps), value=-step_size)


def forward(net, x):
    """Logits of the last time step of each window in ``x`` (batch, window, features)."""
    out, _ = net["lstm"](x)
    return net["head"](net["drop"](out[:, -1, :]))
