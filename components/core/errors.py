"""The one error type a user can cause and fix."""


class FoldwiseError(ValueError):
    """Bad input from the user: the message names the problem and what to do about it.

    The CLI prints the message as ``error: <message>`` and exits with status 2, without a
    traceback. Anything else that escapes is a bug.
    """
