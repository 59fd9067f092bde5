"""Deep-SSM reference models (numpy inference) and MNIST-1D data helpers.

The torch training twins live in :mod:`mor_lqo.deep.torch_models` (optional extra; not imported here).
"""

from .bound import BoundEvaluator, BoundResult, measured_output_error, output_error_bound
from .compress import METHODS, CompressionError, CompressionResult, compress, fit_finite_horizon
from .data import (
    BUNDLED_MODELS,
    bundled_model_path,
    bundled_models_info,
    generate_mnist1d,
    load_bundled_model,
    load_test_split,
    read_safetensors,
    write_safetensors,
)
from .models import LQOModel, S4DModel

__all__ = [
    "S4DModel",
    "LQOModel",
    "BUNDLED_MODELS",
    "bundled_model_path",
    "bundled_models_info",
    "generate_mnist1d",
    "load_bundled_model",
    "load_test_split",
    "read_safetensors",
    "write_safetensors",
    "compress",
    "CompressionResult",
    "CompressionError",
    "METHODS",
    "fit_finite_horizon",
    "output_error_bound",
    "BoundResult",
    "BoundEvaluator",
    "measured_output_error",
]
