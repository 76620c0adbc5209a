"""User-facing errors: the CLI prints their message as one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad params, a missing or mis-laid database, a bad file).

    The message must name the offending path or key and say how to fix it.
    """
