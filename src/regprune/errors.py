"""Errors a user can cause and fix; the CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """Bad input: a wrong config value, a missing file, an impossible request."""

    exit_code = 2
