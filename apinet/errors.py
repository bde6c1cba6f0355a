"""The one exception type the command line prints as a single line (no traceback).

Library functions raise it (or ``ValueError`` / ``FileNotFoundError`` / a subclass such as
:class:`apinet.checkpoint.CheckpointError`) for problems a user can fix: a bad path, a bad file, a
flag out of range. :func:`apinet.cli.main` formats all of them in one place.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """A problem the user can fix (bad path, bad file): printed as one line, no traceback."""
