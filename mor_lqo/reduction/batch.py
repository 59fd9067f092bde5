"""Placeholder: being implemented (see issue 3)."""

from __future__ import annotations


def reduce_batch(*args, **kwargs):
    raise NotImplementedError("reduce_batch is not implemented yet")
