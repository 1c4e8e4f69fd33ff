"""What a worker in safe mode (``--safe``) runs: an explicit allow-list, resolved without walks.

A key holder names every operation a command runs: a torch function (``"torch.add"``), a tensor
method (``"add_"``), an ATen operator overload (``"aten::mul.Tensor"``) or a tensor attribute
(``"T"``, ``"grad"``). A safe worker runs only the names below. Everything else is refused with
:class:`~syftzmq.ops.OperationRefused` naming it. The lists are literal sets, so a reviewer can read
what a key holder can reach, and so can a test (``tests/test_safe_allowlist.py``).

Why deriving the list from torch is not safe: torch exposes, next to its tensor operations, file
access (``aten::from_file`` maps any file, shared and writable if asked), raw memory
(``set_``, storages, ``data_ptr``), views built from caller-given sizes *and* strides that nothing
checks against the storage (``aten::_reshape_alias`` reads the worker's heap, then crashes it),
uninitialized memory (``empty``, ``resize_`` hand back whatever the heap held: pointers, old
buffers), and Python callables (``apply_``, ``register_hook``). None of these is a tensor
operation a model needs, so none is listed. The rules the list keeps:

* no file, storage, shared-memory, raw-pointer, device or pickling access;
* no view from caller-given strides (``as_strided*``, ``_reshape_alias``, ``slice_inverse``);
  ``view``/``reshape``/``expand``/``narrow``/``select``/``unfold`` take sizes, dims and steps
  that torch checks against the tensor;
* no uninitialized memory (``empty*``, ``new_empty*``, ``resize*``);
* no private (``_``) names, no ``unsafe_*`` ops (they skip checks by design), no quantized,
  sparse or backend-specific kernels (packed weights and index layouts a caller can forge);
* no method that takes a Python callable, registers a hook or parses a type name (``type``);
* index arguments (``gather``, ``index_select``, ``scatter``, ``take``, ``put_``, ``embedding``,
  ``max_unpool``, LU pivots, ...) are listed because torch bounds-checks them on CPU and raises;
  the test suite sends out-of-range indices to a safe worker to keep that true.

Names are resolved once, through a fixed table built from these literals (module by module,
``torch.Tensor`` for methods, ``torch.ops.aten`` for overloads): a name from the wire is only
ever a key into that table, never an attribute path walked on ``torch``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch

from ..errors import OperationRefused
from .vocabulary import ATTRIBUTE_POINTERS, OPERATORS, SETTABLE_ATTRIBUTES

# ---------------------------------------------------------------------------------- functions
# torch.<name>: element-wise arithmetic and math.
_TORCH_ARITHMETIC = {
    "abs", "absolute", "acos", "acosh", "add", "addcdiv", "addcmul", "angle", "arccos",
    "arccosh", "arcsin", "arcsinh", "arctan", "arctan2", "arctanh", "asin", "asinh", "atan",
    "atan2", "atanh", "bitwise_and", "bitwise_left_shift", "bitwise_not", "bitwise_or",
    "bitwise_right_shift", "bitwise_xor", "ceil", "clamp", "clamp_max", "clamp_min", "clip",
    "complex", "conj", "conj_physical", "copysign", "cos", "cosh", "deg2rad", "digamma", "div",
    "divide", "erf", "erfc", "erfinv", "exp", "exp2", "expm1", "fix", "float_power", "floor",
    "floor_divide", "fmax", "fmin", "fmod", "frac", "frexp", "gcd", "heaviside", "hypot", "i0",
    "igamma", "igammac", "imag", "lcm", "ldexp", "lerp", "lgamma", "log", "log10", "log1p",
    "log2", "logaddexp", "logaddexp2", "logit", "maximum", "minimum", "mul", "multiply",
    "mvlgamma", "nan_to_num", "neg", "negative", "nextafter", "polar", "polygamma", "positive",
    "pow", "rad2deg", "real", "reciprocal", "remainder", "resolve_conj", "resolve_neg", "round",
    "rsqrt", "rsub", "sgn", "sigmoid", "sign", "signbit", "sin", "sinc", "sinh", "sqrt",
    "square", "sub", "subtract", "tan", "tanh", "true_divide", "trunc", "xlogy",
}
# torch.<name>: comparisons, logic and predicates (the predicates return Python values).
_TORCH_COMPARISON = {
    "allclose", "eq", "equal", "ge", "greater", "greater_equal", "gt", "is_complex", "is_conj",
    "is_floating_point", "is_inference", "is_neg", "is_nonzero", "is_same_size", "is_signed",
    "isclose", "isfinite", "isin", "isinf", "isnan", "isneginf", "isposinf", "isreal", "le",
    "less", "less_equal", "logical_and", "logical_not", "logical_or", "logical_xor", "lt", "ne",
    "not_equal", "numel", "where",
}
# torch.<name>: reductions, scans, sorting and statistics.
_TORCH_REDUCTIONS = {
    "all", "amax", "amin", "aminmax", "any", "argmax", "argmin", "argsort", "argwhere",
    "bincount", "bucketize", "corrcoef", "count_nonzero", "cov", "cummax", "cummin", "cumprod",
    "cumsum", "cumulative_trapezoid", "diff", "dist", "frobenius_norm", "gradient",
    "hash_tensor", "histc", "histogram", "histogramdd", "kthvalue", "logcumsumexp",
    "logsumexp", "max", "mean", "median", "min", "mode", "msort", "nanmean", "nanmedian",
    "nanquantile", "nansum", "nonzero", "nonzero_static", "norm", "nuclear_norm", "prod",
    "quantile", "renorm", "searchsorted", "sort", "std", "std_mean", "sum", "topk",
    "trapezoid", "trapz", "unique", "unique_consecutive", "var", "var_mean",
}
# torch.<name>: shapes, joins, splits and indexing. Views take sizes and dims, never strides;
# index arguments are bounds-checked by torch. ``*_copy`` ops return fresh tensors.
_TORCH_SHAPE_AND_INDEXING = {
    "adjoint", "alias_copy", "atleast_1d", "atleast_2d", "atleast_3d", "block_diag",
    "broadcast_tensors", "broadcast_to", "cartesian_prod", "cat", "channel_shuffle", "chunk",
    "column_stack", "combinations", "concat", "concatenate", "constant_pad_nd", "detach_copy",
    "diag", "diag_embed", "diagflat", "diagonal", "diagonal_copy", "diagonal_scatter", "dsplit",
    "dstack", "expand_copy", "flatten", "flip", "fliplr", "flipud", "gather", "hsplit",
    "hstack", "index_add", "index_copy", "index_fill", "index_put", "index_reduce",
    "index_select", "masked_fill", "masked_scatter", "masked_select", "meshgrid", "moveaxis",
    "movedim", "narrow", "narrow_copy", "permute", "permute_copy", "pixel_shuffle",
    "pixel_unshuffle", "put", "ravel", "repeat_interleave", "reshape", "roll", "rot90",
    "row_stack", "scatter", "scatter_add", "scatter_reduce", "select", "select_copy",
    "select_scatter", "slice_copy", "slice_scatter", "split", "split_copy", "split_with_sizes",
    "split_with_sizes_copy", "squeeze", "squeeze_copy", "stack", "swapaxes", "swapdims", "t",
    "t_copy", "take", "take_along_dim", "tensor_split", "tile", "transpose", "transpose_copy",
    "tril", "triu", "unbind", "unbind_copy", "unflatten", "unfold_copy", "unravel_index",
    "unsqueeze", "unsqueeze_copy", "view_as_complex", "view_as_complex_copy", "view_as_real",
    "view_as_real_copy", "view_copy", "vsplit", "vstack",
}
# torch.<name>: new tensors shaped like an operand (initialized: zeros, a value, random
# numbers), copies, and random sampling.
_TORCH_CREATION = {
    "bernoulli", "binomial", "clone", "detach", "full_like", "multinomial", "ones_like",
    "poisson", "rand_like", "randint_like", "randn_like", "zeros_like",
}
# torch.<name>: matrix products and decompositions (LU pivots are range-checked by torch).
_TORCH_LINALG = {
    "addbmm", "addmm", "addmv", "addr", "baddbmm", "bmm", "cdist", "chain_matmul", "cholesky",
    "cholesky_inverse", "cholesky_solve", "cross", "det", "dot", "einsum", "geqrf", "ger",
    "inner", "inverse", "istft", "kron", "lobpcg", "logdet", "lu", "lu_solve", "lu_unpack",
    "matmul", "matrix_exp", "matrix_power", "mm", "mv", "orgqr", "ormqr", "outer", "pca_lowrank",
    "pdist", "pinverse", "qr", "slogdet", "stft", "svd", "svd_lowrank", "tensordot", "trace",
    "triangular_solve", "vdot",
}
# torch.<name>: neural-network kernels that torch also exposes at top level.
_TORCH_NN = {
    "adaptive_avg_pool1d", "adaptive_max_pool1d", "affine_grid_generator", "alpha_dropout",
    "avg_pool1d", "batch_norm", "bilinear", "binary_cross_entropy_with_logits", "celu",
    "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "convolution", "cosine_embedding_loss", "cosine_similarity", "ctc_loss",
    "dropout", "embedding", "embedding_bag", "feature_alpha_dropout", "feature_dropout",
    "grid_sampler", "grid_sampler_2d", "grid_sampler_3d", "group_norm", "hardshrink",
    "hinge_embedding_loss", "instance_norm", "kl_div", "layer_norm", "log_softmax",
    "margin_ranking_loss", "max_pool1d", "max_pool1d_with_indices", "max_pool2d", "max_pool3d",
    "native_batch_norm", "native_channel_shuffle", "native_dropout", "native_group_norm",
    "native_layer_norm", "pairwise_distance", "poisson_nll_loss", "prelu", "relu", "rms_norm",
    "rrelu", "selu", "softmax", "threshold", "triplet_margin_loss",
}
# torch.nn.functional.<name>: every public function (all are compositions of tensor ops or
# checked kernels).
_NN_FUNCTIONAL = {
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices",
    "adaptive_max_pool3d", "adaptive_max_pool3d_with_indices", "affine_grid", "alpha_dropout",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "batch_norm", "bilinear", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "celu", "channel_shuffle", "conv1d", "conv2d", "conv3d",
    "conv_tbc", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "cosine_embedding_loss", "cosine_similarity", "cross_entropy", "ctc_loss", "dropout",
    "dropout1d", "dropout2d", "dropout3d", "elu", "embedding", "embedding_bag",
    "feature_alpha_dropout", "fold", "fractional_max_pool2d", "fractional_max_pool2d_with_indices",
    "fractional_max_pool3d", "fractional_max_pool3d_with_indices", "gaussian_nll_loss", "gelu",
    "glu", "grid_sample", "group_norm", "gumbel_softmax", "hardshrink", "hardsigmoid",
    "hardswish", "hardtanh", "hinge_embedding_loss", "huber_loss", "instance_norm",
    "interpolate", "kl_div", "l1_loss", "layer_norm", "leaky_relu", "linear",
    "linear_cross_entropy", "local_response_norm", "log_softmax", "logsigmoid", "lp_pool1d",
    "lp_pool2d", "lp_pool3d", "margin_ranking_loss", "max_pool1d", "max_pool1d_with_indices",
    "max_pool2d", "max_pool2d_with_indices", "max_pool3d", "max_pool3d_with_indices",
    "max_unpool1d", "max_unpool2d", "max_unpool3d", "mish", "mse_loss",
    "multi_head_attention_forward", "multi_margin_loss", "multilabel_margin_loss",
    "multilabel_soft_margin_loss", "native_channel_shuffle", "nll_loss", "normalize", "one_hot",
    "pad", "pairwise_distance", "pdist", "pixel_shuffle", "pixel_unshuffle", "poisson_nll_loss",
    "prelu", "relu", "relu6", "rms_norm", "rrelu", "scaled_dot_product_attention", "selu",
    "sigmoid", "silu", "smooth_l1_loss", "soft_margin_loss", "softmax", "softmin", "softplus",
    "softshrink", "softsign", "tanh", "tanhshrink", "threshold", "triplet_margin_loss",
    "triplet_margin_with_distance_loss", "unfold",
}
_LINALG = {
    "cholesky", "cholesky_ex", "cond", "cross", "det", "diagonal", "eig", "eigh", "eigvals",
    "eigvalsh", "householder_product", "inv", "inv_ex", "ldl_factor", "ldl_factor_ex",
    "ldl_solve", "lstsq", "lu", "lu_factor", "lu_factor_ex", "lu_solve", "matmul", "matrix_exp",
    "matrix_norm", "matrix_power", "matrix_rank", "multi_dot", "norm", "pinv", "qr", "slogdet",
    "solve", "solve_ex", "solve_triangular", "svd", "svdvals", "tensorinv", "tensorsolve",
    "vander", "vecdot", "vector_norm",
}
_FFT = {
    "fft", "fft2", "fftn", "fftshift", "hfft", "hfft2", "hfftn", "ifft", "ifft2", "ifftn",
    "ifftshift", "ihfft", "ihfft2", "ihfftn", "irfft", "irfft2", "irfftn", "rfft", "rfft2",
    "rfftn",
}
_SPECIAL = {
    "airy_ai", "bessel_j0", "bessel_j1", "bessel_y0", "bessel_y1", "chebyshev_polynomial_t",
    "chebyshev_polynomial_u", "chebyshev_polynomial_v", "chebyshev_polynomial_w", "digamma",
    "entr", "erf", "erfc", "erfcx", "erfinv", "exp2", "expit", "expm1", "gammainc", "gammaincc",
    "gammaln", "hermite_polynomial_h", "hermite_polynomial_he", "i0", "i0e", "i1", "i1e",
    "laguerre_polynomial_l", "legendre_polynomial_p", "log1p", "log_ndtr", "log_softmax",
    "logit", "logsumexp", "modified_bessel_i0", "modified_bessel_i1", "modified_bessel_k0",
    "modified_bessel_k1", "multigammaln", "ndtr", "ndtri", "polygamma", "psi", "round",
    "scaled_modified_bessel_k0", "scaled_modified_bessel_k1", "shifted_chebyshev_polynomial_t",
    "shifted_chebyshev_polynomial_u", "shifted_chebyshev_polynomial_v",
    "shifted_chebyshev_polynomial_w", "sinc", "softmax", "spherical_bessel_j0", "xlog1py",
    "xlogy", "zeta",
}

# The only modules a function name may live in, and the literal sets of each.
_MODULES: dict[str, Any] = {
    "torch": torch,
    "torch.nn.functional": torch.nn.functional,
    "torch.linalg": torch.linalg,
    "torch.fft": torch.fft,
    "torch.special": torch.special,
}
TORCH_FUNCTIONS: frozenset[str] = frozenset(
    {f"torch.{name}" for name in _TORCH_ARITHMETIC | _TORCH_COMPARISON | _TORCH_REDUCTIONS
     | _TORCH_SHAPE_AND_INDEXING | _TORCH_CREATION | _TORCH_LINALG | _TORCH_NN}
    | {f"torch.nn.functional.{name}" for name in _NN_FUNCTIONAL}
    | {f"torch.linalg.{name}" for name in _LINALG}
    | {f"torch.fft.{name}" for name in _FFT}
    | {f"torch.special.{name}" for name in _SPECIAL})

# ------------------------------------------------------------------------------------ methods
# Operator dunders: arithmetic (plain, reflected, in-place), comparison, indexing. No other
# dunder is listed: __reduce_ex__/__setstate__/__deepcopy__ rebuild tensors from storages,
# __getattribute__/__setattr__ reach anything, __dlpack__ exports raw memory.
OPERATOR_DUNDERS: frozenset[str] = OPERATORS
# Methods with the same meaning as the torch functions above (out-of-place).
_METHOD_MATH = {
    "abs", "absolute", "acos", "acosh", "add", "addbmm", "addcdiv", "addcmul", "addmm", "addmv",
    "addr", "adjoint", "all", "allclose", "amax", "amin", "aminmax", "angle", "any", "arccos",
    "arccosh", "arcsin", "arcsinh", "arctan", "arctan2", "arctanh", "argmax", "argmin",
    "argsort", "argwhere", "asin", "asinh", "atan", "atan2", "atanh", "baddbmm", "bernoulli",
    "bincount", "bitwise_and", "bitwise_left_shift", "bitwise_not", "bitwise_or",
    "bitwise_right_shift", "bitwise_xor", "bmm", "ceil", "cholesky", "cholesky_inverse",
    "cholesky_solve", "clamp", "clamp_max", "clamp_min", "clip", "conj", "conj_physical",
    "copysign", "corrcoef", "cos", "cosh", "count_nonzero", "cov", "cross", "cummax", "cummin",
    "cumprod", "cumsum", "deg2rad", "det", "diff", "digamma", "dist", "div", "divide", "dot",
    "eq", "equal", "erf", "erfc", "erfinv", "exp", "exp2", "expm1", "fix", "float_power",
    "floor", "floor_divide", "fmax", "fmin", "fmod", "frac", "frexp", "gcd", "ge", "geqrf",
    "ger", "greater", "greater_equal", "gt", "hardshrink", "hash_tensor", "heaviside", "histc",
    "histogram", "hypot", "i0", "igamma", "igammac", "inner", "inverse", "isclose", "isfinite",
    "isinf", "isnan", "isneginf", "isposinf", "isreal", "istft", "kron", "kthvalue", "lcm", "ldexp",
    "le", "lerp", "less", "less_equal", "lgamma", "log", "log10", "log1p", "log2",
    "log_softmax", "logaddexp", "logaddexp2", "logcumsumexp", "logdet", "logical_and",
    "logical_not", "logical_or", "logical_xor", "logit", "logsumexp", "lt", "lu", "lu_solve",
    "matmul", "matrix_exp", "matrix_power", "max", "maximum", "mean", "median", "min",
    "minimum", "mm", "mode", "msort", "mul", "multinomial", "multiply", "mv", "mvlgamma",
    "nan_to_num", "nanmean", "nanmedian", "nanquantile", "nansum", "ne", "neg", "negative",
    "nextafter", "nonzero", "nonzero_static", "norm", "not_equal", "orgqr", "ormqr", "outer",
    "pinverse", "polygamma", "positive", "pow", "prelu", "prod", "qr", "quantile", "rad2deg",
    "reciprocal", "relu", "remainder", "renorm", "resolve_conj", "resolve_neg", "round",
    "rsqrt", "sgn", "sigmoid", "sign", "signbit", "sin", "sinc", "sinh", "slogdet", "softmax",
    "sort", "sqrt", "square", "std", "stft", "sub", "subtract", "sum", "svd", "tan", "tanh",
    "topk", "trace", "triangular_solve", "true_divide", "trunc", "unique", "unique_consecutive",
    "var", "vdot", "where", "xlogy",
}
# In-place variants: the optimizers' add_, mul_, addcdiv_, lerp_, zero_ ... and the rest of
# the element-wise family; fills and random fills (initializers); copy_ between tensors.
_METHOD_INPLACE = {
    "abs_", "absolute_", "acos_", "acosh_", "add_", "addbmm_", "addcdiv_", "addcmul_", "addmm_",
    "addmv_", "addr_", "arccos_", "arccosh_", "arcsin_", "arcsinh_", "arctan2_", "arctan_",
    "arctanh_", "asin_", "asinh_", "atan2_", "atan_", "atanh_", "baddbmm_", "bernoulli_",
    "bitwise_and_", "bitwise_left_shift_", "bitwise_not_", "bitwise_or_",
    "bitwise_right_shift_", "bitwise_xor_", "cauchy_", "ceil_", "clamp_", "clamp_max_",
    "clamp_min_", "clip_", "conj_physical_", "copy_", "copysign_", "cos_", "cosh_", "cumprod_",
    "cumsum_", "deg2rad_", "digamma_", "div_", "divide_", "eq_", "erf_", "erfc_", "erfinv_",
    "exp2_", "exp_", "expm1_", "exponential_", "fill_", "fill_diagonal_", "fix_",
    "float_power_", "floor_", "floor_divide_", "fmod_", "frac_", "gcd_", "ge_", "geometric_",
    "greater_", "greater_equal_", "gt_", "heaviside_", "hypot_", "i0_", "igamma_", "igammac_",
    "index_add_", "index_copy_", "index_fill_", "index_put_", "index_reduce_", "lcm_", "ldexp_",
    "le_", "lerp_", "less_", "less_equal_", "lgamma_", "log10_", "log1p_", "log2_", "log_",
    "log_normal_", "logical_and_", "logical_not_", "logical_or_", "logical_xor_", "logit_",
    "lt_", "masked_fill_", "masked_scatter_", "mul_", "multiply_", "mvlgamma_", "nan_to_num_",
    "ne_", "neg_", "negative_", "nextafter_", "normal_", "not_equal_", "polygamma_", "pow_",
    "put_", "rad2deg_", "random_", "reciprocal_", "relu_", "remainder_", "renorm_", "round_",
    "rsqrt_", "scatter_", "scatter_add_", "scatter_reduce_", "sgn_", "sigmoid_", "sign_",
    "sin_", "sinc_", "sinh_", "sqrt_", "square_", "squeeze_", "sub_", "subtract_", "swapaxes_",
    "swapdims_", "t_", "tan_", "tanh_", "transpose_", "tril_", "triu_", "true_divide_",
    "trunc_", "uniform_", "unsqueeze_", "xlogy_", "zero_",
}
# Shapes, views (sizes, dims and steps only: no strides), joins, splits and indexing.
_METHOD_SHAPE_AND_INDEXING = {
    "broadcast_to", "chunk", "contiguous", "diag", "diag_embed", "diagflat", "diagonal",
    "diagonal_scatter", "dsplit", "expand", "expand_as", "flatten", "flip", "fliplr", "flipud",
    "gather", "hsplit", "index_add", "index_copy", "index_fill", "index_put", "index_reduce",
    "index_select", "masked_fill", "masked_scatter", "masked_select", "moveaxis", "movedim",
    "narrow", "narrow_copy", "permute", "put", "ravel", "repeat", "repeat_interleave", "reshape",
    "reshape_as", "roll", "rot90", "scatter", "scatter_add", "scatter_reduce", "select",
    "select_scatter", "slice_scatter", "split", "split_with_sizes", "squeeze", "sum_to_size",
    "swapaxes", "swapdims", "t", "take", "take_along_dim", "tensor_split", "tile", "transpose",
    "tril", "triu", "unbind", "unflatten", "unfold", "unsqueeze", "view", "view_as", "vsplit",
}
# Autograd and optimizer needs, copies, dtype conversions, initialized new tensors.
_METHOD_AUTOGRAD_AND_CONVERSION = {
    "backward", "bfloat16", "bool", "byte", "cdouble", "cfloat", "chalf", "char", "clone",
    "cpu", "detach", "detach_", "double", "float", "half", "int", "long", "new_full",
    "new_ones", "new_zeros", "requires_grad_", "retain_grad", "short", "to", "type_as",
}
# Questions about shape and kind, answered with Python values (the client's mirror usually
# answers them without a message).
_METHOD_QUERIES = {
    "dim", "element_size", "is_complex", "is_conj", "is_contiguous", "is_floating_point",
    "is_inference", "is_neg", "is_nonzero", "is_same_size", "is_signed", "ndimension",
    "nelement", "numel", "size", "stride",
}
TENSOR_METHODS: frozenset[str] = frozenset(
    OPERATOR_DUNDERS | _METHOD_MATH | _METHOD_INPLACE | _METHOD_SHAPE_AND_INDEXING
    | _METHOD_AUTOGRAD_AND_CONVERSION | _METHOD_QUERIES)

# --------------------------------------------------------------------------------- attributes
# ``x.<name>`` read on the worker (getattr commands): views that transpose or take parts of
# complex numbers, autograd state, and plain metadata.
READABLE_ATTRIBUTES: frozenset[str] = frozenset({
    "H", "T", "mH", "mT", "real", "imag", "grad", "data", "requires_grad", "is_leaf",
    "retains_grad", "shape", "dtype", "device", "layout", "ndim", "itemsize", "nbytes",
    "is_cpu", "is_meta", "is_sparse", "names",
})
# ``x.<name> = value`` (setattr commands): what model code and optimizers set.
# ``Ref(id, attr)`` inside a command or a GET names ``x.grad`` or ``x.data``, nothing else; in
# every mode (clients never send anything else).
REFERENCE_ATTRIBUTES: frozenset[str] = ATTRIBUTE_POINTERS

# ------------------------------------------------------------------------------ aten overloads
# ``torch.ops.aten.<name>.<overload>`` called on pointers travels as "aten::<name>.<overload>".
# Only overloads that take tensors are listed (not TorchScript's int/str/list variants).
_ATEN: dict[str, tuple[str, ...]] = {
    # arithmetic and math
    "add": ("Tensor", "Scalar", "out", "Scalar_out"),
    "sub": ("Tensor", "Scalar", "out", "Scalar_out"),
    "mul": ("Tensor", "Scalar", "out", "Scalar_out"),
    "div": ("Tensor", "Scalar", "Tensor_mode", "Scalar_mode", "out", "out_mode", "Scalar_out",
            "Scalar_mode_out"),
    "rsub": ("Tensor", "Scalar", "Tensor_out", "Scalar_out"),
    "pow": ("Tensor_Tensor", "Tensor_Scalar", "Scalar", "Tensor_Tensor_out", "Scalar_out",
            "Tensor_Scalar_out"),
    "fmod": ("Tensor", "Scalar", "Tensor_out", "Scalar_out"),
    "remainder": ("Tensor", "Scalar", "Scalar_Tensor", "Tensor_out", "Scalar_out",
                  "Scalar_Tensor_out"),
    "clamp": ("default", "Tensor", "out", "Tensor_out"),
    "clamp_min": ("default", "Tensor", "out", "Tensor_out"),
    "clamp_max": ("default", "Tensor", "out", "Tensor_out"),
    "lerp": ("Scalar", "Tensor", "Scalar_out", "Tensor_out"),
    "round": ("default", "decimals", "out", "decimals_out"),
    "xlogy": ("Tensor", "Scalar_Other", "Scalar_Self", "OutTensor", "OutScalar_Self",
              "OutScalar_Other"),
    **{name: ("default", "out") for name in (
        "neg", "abs", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt",
        "reciprocal", "square", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh",
        "cosh", "tanh", "floor", "ceil", "trunc", "frac", "sign", "sgn", "addcdiv", "addcmul",
        "maximum", "minimum", "erf", "erfinv", "sigmoid", "logit", "hypot")},
    # comparison and logic
    "eq": ("Tensor", "Scalar", "Scalar_out", "Tensor_out"),
    "ne": ("Tensor", "Scalar", "Scalar_out", "Tensor_out"),
    **{name: ("Tensor", "Scalar", "Scalar_out", "Tensor_out") for name in ("lt", "le", "gt", "ge")},
    **{name: ("default", "out") for name in (
        "logical_and", "logical_or", "logical_not", "logical_xor", "isnan", "isinf",
        "bitwise_not")},
    "isfinite": ("default",),
    "where": ("self", "ScalarOther", "ScalarSelf", "Scalar", "default", "self_out"),
    **{name: ("Tensor", "Scalar", "Scalar_Tensor", "Tensor_out", "Scalar_out",
              "Scalar_Tensor_out") for name in ("bitwise_and", "bitwise_or", "bitwise_xor")},
    # reductions
    "sum": ("dim_IntList", "default", "IntList_out", "out"),
    "mean": ("default", "dim", "out", "dtype_out"),
    "max": ("other", "default", "dim", "dim_max", "unary_out", "out"),
    "min": ("other", "default", "dim", "dim_min", "unary_out", "out"),
    "prod": ("default", "dim_int", "int_out", "out"),
    "var": ("default", "dim", "correction", "correction_out", "out"),
    "std": ("default", "dim", "correction", "correction_out", "out"),
    "norm": ("Scalar", "ScalarOpt_dim", "ScalarOpt_dim_dtype", "dtype_out", "out",
             "ScalarOpt_dtype", "ScalarOpt_dtype_out", "Scalar_out"),
    "all": ("default", "dim", "dims", "out", "dims_out", "all_out"),
    "any": ("default", "dim", "dims", "out", "dims_out", "all_out"),
    "sort": ("default", "stable", "values_stable", "values"),
    "topk": ("default", "values"),
    **{name: ("default", "out") for name in (
        "amax", "amin", "argmax", "argmin", "cumsum", "cumprod", "logsumexp")},
    # shapes, views (no strides) and indexing
    "view": ("default", "dtype"),
    "squeeze": ("default", "dim", "dims"),
    "transpose": ("int",),
    "flatten": ("using_ints",),
    "unflatten": ("int",),
    "slice": ("Tensor",),
    "select": ("int",),
    "narrow": ("default", "Tensor"),
    "split": ("Tensor", "sizes", "default"),
    "unbind": ("int",),
    "movedim": ("int", "intlist"),
    "index": ("Tensor", "Tensor_out", "Tensor_hacked_twin"),
    "scatter": ("value", "src", "reduce", "value_reduce", "src_out", "value_out",
                "reduce_out", "value_reduce_out"),
    "masked_fill": ("Scalar", "Scalar_out", "Tensor", "Tensor_out"),
    **{name: ("default",) for name in (
        "reshape", "expand", "expand_as", "permute", "t", "unsqueeze", "split_with_sizes",
        "chunk", "detach", "alias", "contiguous", "tile", "diagonal")},
    **{name: ("default", "out") for name in (
        "cat", "stack", "index_select", "gather", "scatter_add", "masked_select", "clone",
        "flip", "roll", "repeat", "tril", "triu")},
    # matrix products
    **{name: ("default", "out", "dtype_out", "dtype") for name in ("mm", "bmm", "addmm")},
    **{name: ("default", "out") for name in ("matmul", "addmv", "mv", "dot", "outer")},
    # neural networks
    "softmax": ("int", "int_out"),
    "log_softmax": ("int", "int_out"),
    **{name: ("default", "padding") for name in ("conv1d", "conv2d", "conv3d")},
    **{name: ("default",) for name in (
        "max_pool2d", "batch_norm", "layer_norm", "group_norm", "dropout", "l1_loss",
        "cross_entropy_loss")},
    **{name: ("default", "out") for name in (
        "linear", "relu", "gelu", "silu", "leaky_relu", "hardtanh", "elu", "softplus",
        "convolution", "avg_pool2d", "adaptive_avg_pool2d", "embedding", "nll_loss", "mse_loss",
        "binary_cross_entropy", "binary_cross_entropy_with_logits", "smooth_l1_loss")},
    # tensors like an operand (initialized)
    **{name: ("default", "out") for name in ("zeros_like", "ones_like", "full_like")},
    **{name: ("default", "generator", "out", "generator_out") for name in ("rand_like",
                                                                              "randn_like")},
    # in place (optimizers, initializers, indexing)
    "add_": ("Tensor", "Scalar"),
    "sub_": ("Tensor", "Scalar"),
    "mul_": ("Tensor", "Scalar"),
    "div_": ("Tensor", "Tensor_mode", "Scalar", "Scalar_mode"),
    "lerp_": ("Scalar", "Tensor"),
    "copy_": ("default",),
    "fill_": ("Scalar", "Tensor"),
    "clamp_": ("default", "Tensor"),
    "pow_": ("Scalar", "Tensor"),
    "masked_fill_": ("Scalar", "Tensor"),
    "index_put_": ("default",),
    **{name: ("default",) for name in (
        "addcdiv_", "addcmul_", "sqrt_", "neg_", "zero_", "relu_", "sigmoid_", "tanh_", "exp_",
        "normal_", "uniform_")},
    # conversion (a device that this worker does not have fails in torch)
    "to": ("device", "dtype", "other", "dtype_layout"),
}
ATEN_OPERATORS: frozenset[str] = frozenset(
    f"aten::{name}.{overload}" for name, overloads in _ATEN.items() for overload in overloads)


# --------------------------------------------------------------------------------- resolution
def _split_function(name: str) -> tuple[Any, str]:
    module, _, leaf = name.rpartition(".")
    return _MODULES[module], leaf


def _split_aten(name: str) -> tuple[str, str]:
    op, _, overload = name.partition("::")[2].partition(".")
    return op, overload


@functools.lru_cache(maxsize=None)
def _tables() -> tuple[dict[str, Callable], dict[str, Callable], dict[str, Any],
                       dict[Callable, str], list[str], dict[Callable, str]]:
    """The fixed table, built once from the literals: (functions, methods, aten operators,
    function -> name, listed names this torch lacks, unbound method -> name)."""
    missing: list[str] = []

    def lookup(owner: Any, attr: str, name: str) -> Any:
        value = getattr(owner, attr, None)
        if value is None or not callable(value):
            missing.append(name)
        return value

    functions = {}
    for name in sorted(TORCH_FUNCTIONS):
        value = lookup(*_split_function(name), name)
        if value is not None:
            functions[name] = value
    methods = {}
    for name in sorted(TENSOR_METHODS):
        value = lookup(torch.Tensor, name, f"Tensor.{name}")
        if value is not None:
            methods[name] = value
    aten: dict[str, Any] = {}
    by_packet: dict[str, set[str]] = {}
    for name in sorted(ATEN_OPERATORS):
        op, overload = _split_aten(name)
        packet = getattr(torch.ops.aten, op, None)
        value = getattr(packet, overload, None) if packet is not None else None
        if not isinstance(value, torch._ops.OpOverload):
            missing.append(name)
            continue
        aten[name] = value
        by_packet.setdefault(op, set()).add(overload)
    # A packet (``torch.ops.aten.relu``, no overload) picks its overload at call time: it is
    # listed only when every one of its overloads is.
    for op, listed in by_packet.items():
        packet = getattr(torch.ops.aten, op)
        if set(packet.overloads()) <= listed:
            aten[f"aten::{op}"] = packet
    names: dict[Callable, str] = {}
    method_names: dict[Callable, str] = {}
    for table, reverse in ((functions, names), (methods, method_names)):
        for name, function in table.items():
            try:
                reverse.setdefault(function, name)
            except TypeError:
                continue
    return functions, methods, aten, names, missing, method_names


def unresolved_names() -> list[str]:
    """Listed names that this torch does not have (a test keeps this empty)."""
    return list(_tables()[4])


def resolve_function(name: str) -> Callable | None:
    """The torch function listed as ``name`` (``"torch.add"``), or None."""
    return _tables()[0].get(name) if isinstance(name, str) else None


def resolve_method(name: str) -> Callable | None:
    """The unbound ``torch.Tensor`` method listed as ``name``, or None. Called with the tensor
    as first argument, it refuses anything that is not a tensor."""
    return _tables()[1].get(name) if isinstance(name, str) else None


def resolve_aten(name: str) -> Any:
    """The ATen operator listed as ``"aten::name.overload"`` (or a fully listed packet), or None."""
    return _tables()[2].get(name) if isinstance(name, str) else None


def function_name(function: Any) -> str | None:
    """The listed name of a torch function (the client names functions this way)."""
    try:
        return _tables()[3].get(function)
    except TypeError:  # unhashable
        return None


def method_name(function: Any) -> str | None:
    """The listed name of an unbound tensor method (``Tensor.unflatten`` -> ``"unflatten"``)."""
    try:
        return _tables()[5].get(function)
    except TypeError:  # unhashable
        return None


def readable_attribute(name: str) -> bool:
    return isinstance(name, str) and name in READABLE_ATTRIBUTES


def settable_attribute(name: str) -> bool:
    return isinstance(name, str) and name in SETTABLE_ATTRIBUTES


def check_reference_attribute(attr: Any) -> None:
    """Raise unless ``attr`` (of a ``Ref``) is ``None``, ``"grad"`` or ``"data"``."""
    if attr is not None and attr not in REFERENCE_ATTRIBUTES:
        raise OperationRefused(f"a reference may name .grad or .data of a stored tensor, not "
                               f"attribute {attr!r:.80}: refused")


# ------------------------------------------------------------------------------ the safe check
_KINDS = {"func": "torch function", "method": "tensor method", "op": "operator",
          "getattr": "reading tensor attribute", "setattr": "setting tensor attribute"}


def _refused(kind: str, target: Any, hint: str = "") -> Exception:
    shown = target if isinstance(target, str) else getattr(target, "__qualname__", repr(target))
    return OperationRefused(
        f"this worker runs in safe mode and refuses {_KINDS[kind]} {str(shown)[:120]!r}: it is "
        f"not on the safe worker's allow-list (see SECURITY.md, 'Safe mode'){hint}")


@functools.lru_cache(maxsize=None)
def _on_tensors(name: str, method: Callable) -> Callable:
    """``method`` (unbound) applied to a tensor; ``[i]`` also applies to a stored tuple (a
    result whose structure the client could not infer, e.g. ``torch.linalg.lstsq``'s)."""
    def call(target: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(target, torch.Tensor):
            return method(target, *args, **kwargs)
        if name == "__getitem__" and isinstance(target, tuple) and len(args) == 1 and not kwargs:
            return target[args[0]]
        raise TypeError(f"tensor method {name!r} needs a tensor, got a {type(target).__name__}")
    call.__name__ = name
    return call


def safe_op(kind: str, target: Any) -> tuple:
    """The worker's form of an op in safe mode: ``("func", callable)`` for functions, methods
    (unbound, so they apply to tensors only) and ATen operators, ``(kind, name)`` for listed
    attributes. Anything not listed raises :class:`~syftzmq.ops.OperationRefused`."""
    if kind == "func":
        function = resolve_function(target)
        if function is None:
            raise _refused(kind, target)
        return ("func", function)
    if kind == "method":
        method = resolve_method(target)
        if method is None:
            raise _refused(kind, target)
        return ("func", _on_tensors(target, method))
    if kind == "op":
        operator = resolve_aten(target)
        if operator is None:
            listed = isinstance(target, str) and any(
                name.startswith(target + ".") for name in ATEN_OPERATORS)
            raise _refused(kind, target, "; name one of its listed overloads, e.g. "
                           f"{target}.{_ATEN[_split_aten(target)[0]][0]}" if listed else "")
        return ("func", operator)
    if kind == "getattr" and readable_attribute(target):
        return (kind, target)
    if kind == "setattr" and settable_attribute(target):
        return (kind, target)
    raise _refused(kind, target)
