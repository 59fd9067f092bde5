"""Placeholder: being implemented (see issue 3)."""

from __future__ import annotations


def modal_truncation(*args, **kwargs):
    raise NotImplementedError("modal_truncation is not implemented yet")
