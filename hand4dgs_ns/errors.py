"""User-facing errors: one clear sentence, no traceback."""


class Hand4DGSError(Exception):
    """A problem with the user's input (a path, a file, a layout) that the user can fix.

    The message is one sentence that names the file and says what to do. Command-line entry
    points catch it, print the message and exit with a non-zero status.
    """
