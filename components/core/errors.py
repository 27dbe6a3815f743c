"""The one error type a user can cause and fix."""

import re


class FoldwiseError(ValueError):
    """Bad input from the user: the message names the problem and what to do about it.

    The CLI prints the message as ``error: <message>`` and exits with status 2, without a
    traceback. Anything else that escapes is a bug.
    """


_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # a terminal's colours, bold, cursor moves


def without_escapes(text: str) -> str:
    """``text`` without terminal escape codes (what Keras and kfp put in their messages)."""
    return _ESCAPES.sub("", str(text))


def one_line(text: str) -> str:
    """A message as the terminal shows it: one line, no terminal escape codes."""
    return " ".join(without_escapes(text).split())
