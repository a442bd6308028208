"""Small shell fragments every command builder shares."""

from __future__ import annotations


def on_exit(command: str) -> str:
    """Run ``command`` when the shell exits, also when it is interrupted: dash runs no
    EXIT trap on HUP, INT or TERM, so those exit (and so run it) first.

    >>> on_exit('rm -rf "$t"')
    'trap \\'rm -rf "$t"\\' EXIT; trap \\'exit 1\\' HUP INT TERM'
    """
    return f"trap '{command}' EXIT; trap 'exit 1' HUP INT TERM"


def finish_swap(step: str, new_crt: str, crt: str, key: str) -> str:
    """A certificate and its key are replaced by two renames: when a run stops between
    them, the key in place already belongs to ``new_crt``. This puts ``new_crt`` in place
    too in that case (and only then: a partial or unrelated file is never moved).

    The arguments are shell words (quoted, or "$variables"), with no single quote.
    """
    return (
        f'k=$({step} certificate key {new_crt} 2>/dev/null); if [ -n "$k" ] && '
        f'[ "$k" = "$({step} crypto key public {key} 2>/dev/null)" ]; then '
        f"mv -f {new_crt} {crt}; fi"
    )
