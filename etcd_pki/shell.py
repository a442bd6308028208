"""Small shell fragments every command builder shares."""

from __future__ import annotations


def on_exit(command: str) -> str:
    """Run ``command`` when the shell exits, also when it is interrupted: dash runs no
    EXIT trap on HUP, INT or TERM, so those exit (and so run it) first.

    >>> on_exit('rm -rf "$t"')
    'trap \\'rm -rf "$t"\\' EXIT; trap \\'exit 1\\' HUP INT TERM'
    """
    return f"trap '{command}' EXIT; trap 'exit 1' HUP INT TERM"
