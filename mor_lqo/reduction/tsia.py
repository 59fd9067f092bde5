"""Placeholder: being implemented (see issue 3)."""

from __future__ import annotations


def tsia(*args, **kwargs):
    raise NotImplementedError("tsia is not implemented yet")
