"""The one error type a user can cause and fix."""

import re


class FoldwiseError(ValueError):
    """Bad input from the user: the message names the problem and what to do about it.

    The CLI prints the message as ``error: <message>`` and exits with status 2, without a
    traceback. Anything else that escapes is a bug.
    """


def one_line(text: str) -> str:
    """A message as the terminal shows it: one line, no terminal escape codes."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(text)).split())
