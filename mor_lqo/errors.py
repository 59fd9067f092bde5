"""Exception and warning hierarchy of mor_lqo.

Every error raised on bad input is a subclass of :class:`MorLqoError` *and* of the matching built-in
(``ValueError`` or ``TypeError``), so ``except ValueError`` keeps working for callers that do not know
this package.
"""

from __future__ import annotations


class MorLqoError(Exception):
    """Base class of all mor_lqo errors."""


class ShapeError(MorLqoError, ValueError):
    """Arrays have inconsistent or wrong shapes (including empty systems)."""


class NonFiniteError(MorLqoError, ValueError):
    """An input contains NaN or infinite entries."""


class DTypeError(MorLqoError, TypeError):
    """An input has a non-numeric dtype (object, string, ...)."""


class NotHermitianError(MorLqoError, ValueError):
    """A complex quadratic-output matrix M_j is not Hermitian.

    Real non-symmetric M_j are symmetrised (x^T M x = x^T sym(M) x exactly, so nothing changes) with a
    :class:`SymmetrizationWarning`; complex non-Hermitian M_j would change the output and are rejected.
    """


class UnstableSystemError(MorLqoError, ValueError):
    """The system is not asymptotically stable, so its h2 norm is infinite / undefined."""


class SamplingTimeError(MorLqoError, ValueError):
    """Continuous and discrete systems mixed, different sampling times, or different time-index
    conventions; also an invalid sampling time (negative, NaN, inf) or an unknown convention."""


class InvalidArgumentError(MorLqoError, ValueError):
    """An option has an invalid value (tolerance, iteration limit, shifts, scale, ...); the message
    names the argument."""


class UnknownMethodError(InvalidArgumentError):
    """An unknown method, criterion or initialisation name."""


class UnexpectedOptionError(MorLqoError, TypeError):
    """Keyword options that the chosen method does not accept."""


class NotASystemError(MorLqoError, TypeError):
    """An argument that must be an :class:`~mor_lqo.LQOSystem` is something else."""


class OrderError(MorLqoError, ValueError):
    """A requested reduced order is invalid (r < 1 or r >= order, or not representable)."""


class ProjectionBreakdownError(MorLqoError, ArithmeticError):
    """An iterative reducer's Petrov–Galerkin projection broke down (W^H V numerically singular or
    non-finite bases) and could not be recovered by restarting from balanced truncation."""


class IllConditionedError(MorLqoError, ArithmeticError):
    """A transformation the computation needs is too ill-conditioned to give a trustworthy result
    (the message names the condition number)."""


class NumericalAccuracyError(MorLqoError, ArithmeticError):
    """A quantity cannot be computed to any meaningful accuracy (e.g. a squared h2 error that evaluates
    to a negative number far beyond rounding, from an ill-conditioned reduced model)."""


class RelativeErrorUndefinedError(MorLqoError, ValueError):
    """A relative error was asked for against a reference of infinite or zero norm."""


class ComplexSystemError(MorLqoError, TypeError):
    """A complex system was passed where only real systems are supported (it is never cast silently)."""


class LayoutError(MorLqoError, ValueError):
    """A checkpoint layout is unknown, partial or inconsistent."""


class SettingsMismatchError(LayoutError):
    """The system extracted with the given or detected settings (discretisation, dt transform, ...) does not
    reproduce what the module itself computes: a setting is missing or wrong; the message names the block
    and the settings used."""


class CalibrationError(MorLqoError, ValueError):
    """Calibration data that cannot be used: wrong type, shape, dtype or length, non-finite values, or a
    network that never calls one of its SSM blocks on it."""


class CheckpointError(MorLqoError, ValueError):
    """A checkpoint file is corrupt, truncated, unsafe to load, or would be overwritten."""


class DataFileError(MorLqoError, ValueError):
    """A data file (``.npz`` calibration inputs) that cannot be read safely: unreadable, pickled,
    inconsistent with its own header, or larger than the memory limit."""


class SymmetrizationWarning(UserWarning):
    """A real quadratic-output matrix was replaced by its symmetric part (output unchanged)."""


class ConvergenceWarning(UserWarning):
    """An iterative method stopped before meeting its tolerance."""


__all__ = [
    "MorLqoError",
    "SettingsMismatchError",
    "CalibrationError",
    "ShapeError",
    "NonFiniteError",
    "DTypeError",
    "NotHermitianError",
    "UnstableSystemError",
    "SamplingTimeError",
    "InvalidArgumentError",
    "UnknownMethodError",
    "NotASystemError",
    "UnexpectedOptionError",
    "OrderError",
    "ComplexSystemError",
    "ProjectionBreakdownError",
    "IllConditionedError",
    "LayoutError",
    "CheckpointError",
    "DataFileError",
    "NumericalAccuracyError",
    "RelativeErrorUndefinedError",
    "SymmetrizationWarning",
    "ConvergenceWarning",
]
