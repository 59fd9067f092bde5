"""Placeholder: being implemented (see issue 3)."""

from __future__ import annotations


def balanced_truncation(*args, **kwargs):
    raise NotImplementedError("balanced_truncation is not implemented yet")
