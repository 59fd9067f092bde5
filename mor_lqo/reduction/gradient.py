"""Placeholder: being implemented (see issue 3)."""

from __future__ import annotations


def h2_gradient(*args, **kwargs):
    raise NotImplementedError("h2_gradient is not implemented yet")
