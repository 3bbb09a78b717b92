"""Errors a user can cause and fix; the CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """Bad input: a wrong config value, a missing file, an impossible request."""

    exit_code = 2


class StorageError(UserError):
    """A run file or table could not be written: a full disk, a quota, an I/O error, a read-only file system,
    a permission. ``path`` is the file; the message says why and how much space is left."""

    def __init__(self, path, message: str):
        super().__init__(message)
        self.path = path
