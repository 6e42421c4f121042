"""LSTM end classifier trained on probabilistic labels (noise-aware loss), scikit-learn compatible.

The estimator is generic over a feature matrix in time order: one column (RTT), window statistics, or
flow-record features all work the same way. Every row gets a prediction; the model sees, for row ``t``,
the window of rows ``t-window+1 .. t`` (see :func:`window_indices`).

torch is imported inside functions only, so importing this module (or ``flamenco_core.models``) stays
cheap for the CLI.
"""

from __future__ import annotations

import copy
import logging
import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_array, check_is_fitted

from .lstm_torch import EVAL_CHUNK, Adam, build_net, cpu_threads, forward, resolve_device, seeded
from .windows import group_starts, make_windows, window_indices

__all__ = ["LSTMClassifier", "make_windows", "window_indices"]

log = logging.getLogger(__name__)
# kept under its former private name too: tests/core/test_models.py imports ``_Adam`` from here
_Adam = Adam


class LSTMClassifier(ClassifierMixin, BaseEstimator):
    """LSTM over time-ordered windows, trained with a noise-aware loss on probabilistic labels.

    ``ClassifierMixin`` comes before ``BaseEstimator`` as scikit-learn requires for its tags.

    Parameters
    ----------
    window : int
        Sequence length. Row ``t`` is classified from rows ``t-window+1 .. t``; the first ``window-1``
        rows (of the series, or of each group) are padded by repeating the first row.
    hidden : int
        LSTM cells per layer (the paper's "cells").
    num_layers : int
        Stacked LSTM layers.
    dropout : float
        Dropout before the output layer (and between LSTM layers when ``num_layers > 1``).
    lr, weight_decay : float
        Adam learning rate (betas 0.9, 0.999) and L2 penalty.
    epochs, batch_size : int
        Maximum epochs and minibatch size.
    class_weight : "balanced", dict or None
        "balanced" weighs class ``c`` by ``n / (k * n_c)`` with ``n_c`` the expected count of class ``c``
        under the (soft) training labels; a dict maps class labels (class indices for soft labels) to
        weights, missing classes weigh 1.
    patience, min_delta : int, float
        Early stopping: training stops when the validation loss has not improved by more than
        ``min_delta`` (absolute) for ``patience`` epochs. The weights of the last epoch that improved
        by more than ``min_delta`` are restored, also when the epoch budget runs out first.
    validation_fraction : float
        When ``fit`` gets no ``X_val``, this fraction of the rows, taken from the end (time order), is
        held out for early stopping; their windows may reach back into the training rows (features
        only, no labels). 0 disables early stopping, as does a split that would leave either side empty.
    random_state : int
        Seeds weight initialisation, dropout and shuffling; fits are bitwise reproducible on CPU. On
        CUDA deterministic algorithms are requested (warn-only); bitwise reproducibility there also
        needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` set before CUDA starts.
    device : "auto", "cpu", "cuda", ...
        "auto" uses CUDA when ``torch.cuda.is_available()``.
    num_threads : int or None
        torch intra-op threads on CPU during ``fit``/``predict_proba`` (restored afterwards; the setting
        is process-wide, so concurrent fits in threads share it). 1 by default: this model's per-step
        matrices are small, and on a shared 2-core machine 2 threads measured 10x slower than 1 (threads
        spin while preempted). None leaves torch's setting. For parallelism, run fits in processes.
    verbose : bool
        Log each epoch's losses at INFO (DEBUG otherwise).
    max_train_rows : int or None
        Train on the windows of at most this many rows, a sample seeded by ``random_state`` (the
        windows still read every row), and take early stopping's validation loss on at most as many;
        None uses all. An epoch costs a step per ``batch_size`` rows, so this bounds a fit on a million
        rows to what one on the cap costs.

    Attributes
    ----------
    classes_ : ndarray
        Class labels; for probabilistic labels with ``k`` columns, ``arange(k)``.
    n_epochs_run_ : int
        Epochs actually trained.
    n_train_rows_ : int
        Rows whose windows were trained on (fewer than given beyond ``max_train_rows``).
    best_epoch_ : int
        Epoch (1-based) whose weights were kept.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss`` (NaN without validation), ``seconds``.
    class_weight_ : ndarray
        The class weights used, by class index.
    device_ : str
        Device used for training.
    """

    def __init__(
        self,
        window: int = 10,
        hidden: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        lr: float = 1e-3,
        epochs: int = 20,
        batch_size: int = 64,
        weight_decay: float = 0.0,
        class_weight: str | dict | None = "balanced",
        patience: int = 2,
        min_delta: float = 0.01,
        validation_fraction: float = 0.2,
        random_state: int = 0,
        device: str = "auto",
        num_threads: int | None = 1,
        verbose: bool = False,
        max_train_rows: int | None = None,
    ):
        self.window = window
        self.hidden = hidden
        self.num_layers = num_layers
        self.dropout = dropout
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.class_weight = class_weight
        self.patience = patience
        self.min_delta = min_delta
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device
        self.num_threads = num_threads
        self.verbose = verbose
        self.max_train_rows = max_train_rows

    # ------------------------------------------------------------------ input handling
    def _check_X(self, X, reset: bool) -> np.ndarray:
        X = np.asarray(X) if not hasattr(X, "to_numpy") else X.to_numpy()
        if X.ndim == 1:  # a bare RTT series is one feature
            X = X[:, None]
        X = check_array(X, dtype=np.float32, ensure_all_finite=True)
        if reset:
            self.n_features_in_ = X.shape[1]
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the model was fitted with {self.n_features_in_}")
        return X

    def _targets(self, y, fitting: bool) -> np.ndarray:
        """Labels as an (n, k) float32 matrix of class probabilities; sets ``classes_`` when fitting."""
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim == 2:
            P = y.astype(np.float64)
            if not np.isfinite(P).all() or (P < 0).any():
                raise ValueError("probabilistic labels must be finite and non-negative")
            s = P.sum(axis=1, keepdims=True)
            if (s <= 0).any():
                raise ValueError("every row of probabilistic labels needs positive mass")
            if fitting:
                if P.shape[1] < 2:
                    raise ValueError("probabilistic labels need at least 2 columns (classes)")
                self.classes_ = np.arange(P.shape[1])
            elif P.shape[1] != len(self.classes_):
                raise ValueError(f"labels have {P.shape[1]} columns, the model has {len(self.classes_)} classes")
            return (P / s).astype(np.float32)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D hard labels or 2-D probabilities, got shape {y.shape}")
        if fitting:
            classes = np.unique(y)
            if len(classes) < 2:
                raise ValueError(
                    f"training labels contain a single class ({classes.tolist()}); a classifier needs two"
                )
            self.classes_ = classes
        pos = np.searchsorted(self.classes_, y)
        pos = np.clip(pos, 0, len(self.classes_) - 1)
        if not np.array_equal(self.classes_[pos], y):
            raise ValueError(f"labels contain classes unseen in training: {sorted(set(y) - set(self.classes_))}")
        P = np.zeros((len(y), len(self.classes_)), dtype=np.float32)
        P[np.arange(len(y)), pos] = 1.0
        return P

    def _class_weights(self, P: np.ndarray) -> np.ndarray:
        k = P.shape[1]
        if self.class_weight is None:
            return np.ones(k, dtype=np.float32)
        if isinstance(self.class_weight, str):
            if self.class_weight != "balanced":
                raise ValueError(f"class_weight must be 'balanced', a dict or None, got {self.class_weight!r}")
            # Expected counts under soft labels; a class with (almost) no mass is floored at one row so
            # its weight stays finite.
            counts = np.maximum(P.sum(axis=0), 1.0)
            return (len(P) / (k * counts)).astype(np.float32)
        w = np.ones(k, dtype=np.float32)
        for c, v in self.class_weight.items():
            idx = np.flatnonzero(self.classes_ == c)
            if idx.size == 0:
                raise ValueError(f"class_weight names class {c!r}, not among {self.classes_.tolist()}")
            w[idx[0]] = v
        return w

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, *, X_val=None, y_val=None, sample_weight=None, groups=None, groups_val=None):
        """Train on ``X`` (rows in time order) and labels ``y``.

        ``y`` is hard labels (n,) or the label model's probabilities (n, k). The loss is the expected
        cross-entropy under the soft targets, ``sum_k w_k p_k (-log softmax_k)``, normalised by
        ``sum_k w_k p_k`` over the batch (for one-hot targets: torch's weighted cross-entropy), times
        ``sample_weight`` when given. ``X_val``/``y_val`` (same label format; windows built from
        ``X_val`` alone, its first rows padded) drive early stopping; without them
        ``validation_fraction`` of the rows at the end is held out. ``groups`` /
        ``groups_val`` label contiguous series (e.g. SD pairs) so that windows never cross them.
        """
        import torch

        X = self._check_X(X, reset=True)
        P = self._targets(y, fitting=True)
        if len(P) != len(X):
            raise ValueError(f"X has {len(X)} rows, y has {len(P)}")
        sw = np.ones(len(X), dtype=np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32)
        if sw.shape != (len(X),):
            raise ValueError("sample_weight must have one entry per row")
        if self.window < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("window, epochs and batch_size must be >= 1")

        n = len(X)
        if X_val is not None:
            if y_val is None:
                raise ValueError("X_val given without y_val")
            Xv = self._check_X(X_val, reset=False)
            Pv = self._targets(y_val, fitting=False)
            train_rows, val_rows = np.arange(n), None
        else:
            n_val = int(round(n * self.validation_fraction))
            if n_val < 1 or n - n_val < 1:
                n_val = 0
            train_rows = np.arange(n - n_val)
            val_rows = np.arange(n - n_val, n) if n_val else None
            Xv = Pv = None
        train_rows = self._capped(train_rows, 0)
        self.n_train_rows_ = len(train_rows)

        # Standardize with training-row statistics only; a constant column keeps scale 1 (stays 0).
        Xt = X[train_rows]
        self.mean_ = Xt.mean(axis=0)
        std = Xt.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0).astype(np.float32)
        cw = self._class_weights(P[train_rows])
        self.class_weight_ = cw

        dev = resolve_device(self.device)
        self.device_ = str(dev)
        k = len(self.classes_)
        with seeded(self.random_state, dev), cpu_threads(self.num_threads, dev):
            net = build_net(X.shape[1], self.hidden, self.num_layers, self.dropout, k).to(dev)
            opt = Adam(net.parameters(), lr=self.lr, betas=(0.9, 0.999), weight_decay=self.weight_decay)
            gen = torch.Generator().manual_seed(self.random_state)

            Xs = torch.from_numpy(self._scale(X)).to(dev)
            starts = torch.from_numpy(group_starts(n, groups)).to(dev)
            Pt = torch.from_numpy(P).to(dev)
            swt = torch.from_numpy(sw).to(dev)
            cwt = torch.from_numpy(cw).to(dev)
            offsets = torch.arange(self.window, device=dev) - (self.window - 1)
            train_t = torch.from_numpy(train_rows).to(dev)

            if Xv is not None:
                v_X = torch.from_numpy(self._scale(Xv)).to(dev)
                v_starts = torch.from_numpy(group_starts(len(Xv), groups_val)).to(dev)
                v_rows = torch.from_numpy(self._capped(np.arange(len(Xv)), 1)).to(dev)
                v_P = torch.from_numpy(Pv).to(dev)
                v_sw = torch.ones(len(Xv), device=dev)
            elif val_rows is not None:
                v_X, v_starts, v_P, v_sw = Xs, starts, Pt, swt
                v_rows = torch.from_numpy(self._capped(val_rows, 1)).to(dev)
            else:
                v_X = None

            def windows(src, st, rows):
                idx = torch.maximum(rows[:, None] + offsets, st[rows][:, None])
                return src[idx]

            def loss_terms(logits, p, w):
                # Per-row weight w_i * sum_k cw_k p_ik; returning numerator and denominator lets the
                # validation loss be summed over chunks exactly.
                wp = p * cwt * w[:, None]
                num = -(wp * torch.log_softmax(logits, dim=1)).sum()
                return num, wp.sum()

            best, best_state, best_epoch, wait = float("inf"), None, 0, 0
            self.history_ = []
            for epoch in range(1, self.epochs + 1):
                t0 = time.perf_counter()
                net.train()
                perm = train_t[torch.randperm(len(train_rows), generator=gen).to(dev)]
                # Accumulate on the device: a float() per batch would synchronise CUDA every step.
                tot_num = torch.zeros((), device=dev)
                tot_den = torch.zeros((), device=dev)
                for i in range(0, len(perm), self.batch_size):
                    rows = perm[i : i + self.batch_size]
                    num, den = loss_terms(forward(net, windows(Xs, starts, rows)), Pt[rows], swt[rows])
                    # clamp: a batch whose rows all have sample_weight 0 contributes nothing, not NaN.
                    loss = num / den.clamp_min(1e-12)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    tot_num += num.detach()
                    tot_den += den.detach()
                train_loss = float(tot_num / tot_den) if float(tot_den) > 0 else float("nan")

                val_loss = float("nan")
                if v_X is not None:
                    net.eval()
                    vn = vd = 0.0
                    with torch.no_grad():
                        for i in range(0, len(v_rows), EVAL_CHUNK):
                            rows = v_rows[i : i + EVAL_CHUNK]
                            num, den = loss_terms(forward(net, windows(v_X, v_starts, rows)), v_P[rows], v_sw[rows])
                            vn += float(num)
                            vd += float(den)
                    val_loss = vn / vd if vd else float("nan")

                self.history_.append(
                    {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "seconds": time.perf_counter() - t0}
                )
                log.log(
                    logging.INFO if self.verbose else logging.DEBUG,
                    "epoch %d train_loss %.4f val_loss %.4f",
                    epoch,
                    train_loss,
                    val_loss,
                )
                if v_X is None or not np.isfinite(val_loss):
                    continue
                if best - val_loss > self.min_delta:
                    best, best_epoch, wait = val_loss, epoch, 0
                    best_state = copy.deepcopy(net.state_dict())
                else:
                    wait += 1
                    if wait >= self.patience:
                        break

        if best_state is not None:
            net.load_state_dict(best_state)
        self.best_epoch_ = best_epoch if best_state is not None else len(self.history_)
        self.n_epochs_run_ = len(self.history_)
        self.best_val_loss_ = best if best_state is not None else float("nan")
        net.eval()
        self.net_ = net
        return self

    def _capped(self, rows: np.ndarray, stream: int) -> np.ndarray:
        """``rows``, or beyond ``max_train_rows`` a seeded sample of them in order (stream 0: training,
        1: the validation rows of early stopping, whose loss a sample estimates as well)."""
        cap = self.max_train_rows
        if cap is None or len(rows) <= cap:
            return rows
        pick = np.random.default_rng([self.random_state, stream]).choice(len(rows), cap, replace=False)
        return rows[np.sort(pick)]

    def _scale(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) / self.scale_).astype(np.float32)

    # ------------------------------------------------------------------ predict
    def predict_proba(self, X, groups=None) -> np.ndarray:
        """Class probabilities per row, shape ``(n_rows, n_classes)``, columns in ``classes_`` order.

        Windows are built from ``X`` alone (its first rows padded); to give the first rows real history,
        pass the preceding rows too and slice the result.
        """
        import torch

        check_is_fitted(self, "net_")
        X = self._check_X(X, reset=False)
        net = self.net_
        dev = next(net.parameters()).device
        Xs = torch.from_numpy(self._scale(X)).to(dev)
        starts = torch.from_numpy(group_starts(len(X), groups)).to(dev)
        offsets = torch.arange(self.window, device=dev) - (self.window - 1)
        out = np.empty((len(X), len(self.classes_)), dtype=np.float32)
        net.eval()
        with torch.no_grad(), cpu_threads(self.num_threads, dev):
            for i in range(0, len(X), EVAL_CHUNK):
                rows = torch.arange(i, min(i + EVAL_CHUNK, len(X)), device=dev)
                idx = torch.maximum(rows[:, None] + offsets, starts[rows][:, None])
                out[i : i + len(rows)] = torch.softmax(forward(net, Xs[idx]), dim=1).cpu().numpy()
        return out

    def predict(self, X, groups=None) -> np.ndarray:
        """Most probable class per row (labels from ``classes_``)."""
        return self.classes_[np.argmax(self.predict_proba(X, groups=groups), axis=1)]
