"""Placeholder: being implemented (see issue 3)."""

from __future__ import annotations


def irka(*args, **kwargs):
    raise NotImplementedError("irka is not implemented yet")
