"""The settings table of README.md, made from the settings spec (etcd_pki/settings.py).

    python -m etcd_pki.settings_table [--check] [FILE]    # `make settings-table`

rewrites the table between the two marker lines of FILE (README.md by default); with
``--check`` it changes nothing and exits 1 when the table is not current.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .settings import SPEC, Setting

BEGIN = "<!-- settings-table: made by `make settings-table` from etcd_pki/settings.py -->"
END = "<!-- settings-table: end -->"
README = Path(__file__).resolve().parents[1] / "README.md"


def shown_default(s: Setting) -> str:
    """The default as the table shows it."""
    if s.shown is not None:
        return s.shown
    if isinstance(s.default, str):
        return f"`{s.default}`" if s.default else '`""`'
    return f"`{s.default!r}`"


def render() -> str:
    """The table, one row per setting in the spec's order, between the markers."""
    rows = [f"| `{s.name}` | {shown_default(s)} | {s.doc} |" for s in SPEC]
    return "\n".join([BEGIN, "| setting | default | meaning |", "|---|---|---|", *rows, END])


def current(text: str) -> str:
    """The table between the markers of ``text`` (markers included)."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [a for a in argv if a != "--check"]
    path = Path(paths[0]) if paths else README
    text = path.read_text()
    old = current(text)
    if old == render():
        return 0
    if check:
        print(f"{path}: the settings table is not current; run `make settings-table`")
        return 1
    path.write_text(text.replace(old, render()))
    print(f"{path}: settings table rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
