"""One base class for every failure a user can act on, in every layer.

A :class:`SecureAIError` carries a message that is one line naming what is wrong and what is
allowed or what to do. The CLI (``pipelines/cli_base.py``) catches this one class and prints
``secureai: error: <message>``; anything else is a bug and is reported as an internal error.
Each layer subclasses it next to the code that raises it (``SpecError``, ``ConfigError``,
``PublishRefused``...), often together with the built-in class callers already expect:

>>> class SpecError(SecureAIError, ValueError):
...     pass
>>> isinstance(SpecError("unknown field kind 'x'; choose from numeric, categorical"), ValueError)
True
"""

from __future__ import annotations


class SecureAIError(Exception):
    """A user-facing failure: its message is one actionable line."""
