"""The error types that mean "the input is wrong", as opposed to a bug in metarl.

The command line prints these as one line naming the problem and exits non-zero;
anything else keeps its traceback, so an internal bug is never hidden behind a
one-line message.
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """A bad argument, task, config or file given to metarl; the message says what to change."""
