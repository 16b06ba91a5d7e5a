"""The one exception type that means "the user asked for something invalid"."""


class UserError(Exception):
    """Bad flag, file or data: shown as one line, no traceback, exit code 2."""
