"""The numerical pieces that meta-learners and meta-optimizers share.

Conjugate gradient, a Hessian-vector product, and the backtracking line search of
TRPO (Schulman et al. 2015, arXiv 1502.05477, appendix C), each small and separately tested, as pytorch-maml-rl keeps them
(``maml_rl/utils/optimization.py``, ``metalearners/maml_trpo.py``). Vectors are
flat: :func:`flat` and :func:`unflat` convert to and from lists of tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from metarl.objectives import MetaBatch, gaussian_kl, masked_task_mean

__all__ = [
    "LineSearchResult",
    "backtracking_line_search",
    "check_finite",
    "check_step_inputs",
    "conjugate_gradient",
    "flat",
    "hessian_vector_product",
    "mean_kl",
    "unflat",
]


def flat(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one flat vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector into views shaped like ``like``."""
    sizes = [t.numel() for t in like]
    if vector.numel() != sum(sizes):
        raise ValueError(f"vector has {vector.numel()} entries, the tensors {sum(sizes)}")
    return [v.view_as(t) for v, t in zip(vector.split(sizes), like, strict=True)]


def conjugate_gradient(
    fvp: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10, residual_tol: float = 1e-10
) -> Tensor:
    """Approximate solution of ``A x = b`` for symmetric positive-definite ``A = fvp``.

    Hestenes and Stiefel (1952); stops early once the squared residual norm is
    below ``residual_tol``. Starts from ``x = 0``, so ``iters`` products at most.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < residual_tol:
            break
        ap = fvp(p)
        alpha = rr / (p @ ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def hessian_vector_product(
    output: Tensor, params: Sequence[Tensor], damping: float = 0.0
) -> Callable[[Tensor], Tensor]:
    """``v -> (d^2 output / d params^2) v + damping * v``, by double backward (Pearlmutter 1994).

    The gradient is built once with ``create_graph=True``; each product is one
    more backward through it, the graph retained for the next.
    """
    params = list(params)
    grads = torch.autograd.grad(output, params, create_graph=True, materialize_grads=True)
    flat_grad = flat(grads)

    def product(v: Tensor) -> Tensor:
        hv = torch.autograd.grad(
            flat_grad, params, grad_outputs=v, retain_graph=True, materialize_grads=True
        )
        return flat(hv) + damping * v

    return product


class LineSearchResult(NamedTuple):
    """Outcome of :func:`backtracking_line_search`.

    ``fraction`` is the accepted multiple of the full step, ``None`` when every
    trial was rejected (parameters restored); ``steps`` counts trials evaluated;
    ``loss`` and ``kl`` are those of the accepted trial (of the last one if none).
    """

    fraction: float | None
    steps: int
    loss: float
    kl: float


@torch.no_grad()
def backtracking_line_search(
    params: Sequence[Tensor],
    step: Tensor,
    evaluate: Callable[[], tuple[float, float]],
    loss_before: float,
    max_kl: float,
    max_steps: int = 15,
    backtrack_ratio: float = 0.8,
) -> LineSearchResult:
    """Try ``params + ratio^i * step`` for ``i = 0, 1, ...`` and keep the first acceptable one.

    A trial is accepted only when the surrogate improves (``loss < loss_before``)
    AND the mean KL stays within ``max_kl``; NaN counts as a failure. ``params``
    are edited in place; after a rejection of every trial they hold their old
    values again. ``evaluate()`` returns ``(loss, kl)`` at the current params.
    """
    params = list(params)
    old = [p.detach().clone() for p in params]
    deltas = unflat(step, params)
    fraction, loss, kl = 1.0, float("nan"), float("nan")
    for i in range(max_steps):
        for p, p_old, d in zip(params, old, deltas, strict=True):
            p.copy_(p_old + fraction * d)
        loss, kl = evaluate()
        if loss < loss_before and kl <= max_kl:
            return LineSearchResult(fraction, i + 1, loss, kl)
        fraction *= backtrack_ratio
    for p, p_old in zip(params, old, strict=True):
        p.copy_(p_old)
    return LineSearchResult(None, max_steps, loss, kl)


# --- guards every meta-step makes, and the KL they measure ---------------------------------


def check_finite(what: str, tensors: Sequence[Tensor] | Tensor) -> None:
    """Raise ``FloatingPointError`` naming ``what`` if any tensor holds NaN or inf."""
    tensors = [tensors] if isinstance(tensors, Tensor) else tensors
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise FloatingPointError(
            f"{what} is not finite (NaN or inf); parameters were left unchanged. "
            "Check the episodes and advantages, or lower the step sizes."
        )


def check_step_inputs(params: Sequence[Tensor], batch: MetaBatch) -> None:
    """The checks every meta-step makes before it touches anything: finite parameters and batch."""
    check_finite("policy parameters", params)
    bad = batch.nonfinite_fields()
    if bad:
        raise FloatingPointError(
            f"meta-batch fields {bad} hold NaN or inf; parameters were left unchanged"
        )


def mean_kl(old_mean: Tensor, old_std: Tensor, mean: Tensor, std: Tensor, mask: Tensor) -> Tensor:
    """``KL(old || new)`` averaged over each task's valid steps, then over tasks."""
    return masked_task_mean(gaussian_kl(old_mean, old_std, mean, std), mask).mean()
