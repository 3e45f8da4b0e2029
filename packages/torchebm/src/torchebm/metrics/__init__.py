r"""``torchebm.metrics``: sample-quality metrics and grid partition functions.

Part of the ``torchebm`` meta distribution (``pip install torchebm``); torch only.

Every distance takes two batches of samples ``x`` of shape ``(N, *event_shape)`` and ``y``
of shape ``(M, *event_shape)`` (event dimensions are flattened to ``D`` features), runs on
their device in the promoted floating dtype (float32 for float16/bfloat16 samples, the
value rounded to their dtype at the end), works on the pairwise quantities in blocks
(so $10^4 \times 10^4$ pairs fit in memory) and returns a 0-d tensor. The metrics are
evaluation tools, not losses: not differentiable, the value carries no gradient (they run
without autograd; a warning says so once when an input requires grad). The samples are
centred and rescaled by a power of two (exact), each row of pairwise terms is summed in the
data's dtype and the row totals in float64, so float32 samples of any scale (1e-30 or 1e20,
where squared distances would underflow or overflow) give float64's result to about
1e-5 (relative) where the metric is of the order of its terms, and to about 1e-4 where it
is 1e-4 of them (measured: 3e-8 to 7e-5).

* `mmd2`: squared maximum mean discrepancy with one or several Gaussian (RBF) kernels,
  bandwidth by the median heuristic or given, biased (V) or unbiased (U) estimator.
* `energy_distance`: the energy distance $2\mathbb E\|X-Y\| - \mathbb E\|X-X'\| -
  \mathbb E\|Y-Y'\|$ (its square-root-free form; the biased estimator equals
  `scipy.stats.energy_distance` squared), unbiased by default.
* `sliced_wasserstein`: the sliced $p$-Wasserstein distance over random directions.
* `kernel_two_sample_test`: the MMD permutation test of $P = Q$ with its p-value.
* `grid_log_partition` / `grid_nll`: $\log Z$ and the negative log-likelihood of a 2-D
  energy by quadrature on an adaptive grid, with an error estimate (a `RuntimeWarning`
  when it exceeds $10^{-2}$ nats).

Example:
    >>> import torch
    >>> from torchebm.metrics import mmd2, energy_distance
    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g) + 1.0
    >>> bool(mmd2(x, y) > 0.1), bool(energy_distance(x, y) > 0.3)
    (True, True)

References:
    Gretton, Borgwardt, Rasch, Schölkopf & Smola, "A Kernel Two-Sample Test", JMLR 13, 2012.
    Székely & Rizzo, "Energy statistics: A class of statistics based on distances", Journal
    of Statistical Planning and Inference 143(8), 2013.
    Bonneel, Rabin, Peyré & Pfister, "Sliced and Radon Wasserstein Barycenters of
    Measures", Journal of Mathematical Imaging and Vision 51, 2015.
"""

from importlib.metadata import version as _version

from torchebm.metrics import _metrics
from torchebm.metrics._metrics import *  # noqa: F403

__version__ = _version("torchebm")

__all__ = [*_metrics.__all__]
