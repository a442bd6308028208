"""Release binaries: download (curl or wget), verify the sha256, install atomically."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from .shell import on_exit

REMOVE_TMP = 'rm -rf "$tmp"'


def install_command(
    tarball: str,
    sha256: str,
    binaries: Sequence[str],
    bin_dir: str,
    optional: Sequence[str] = (),
) -> str:
    """Verify ``tarball``, unpack it and replace each of ``binaries`` (and each of
    ``optional`` the tarball holds) in ``bin_dir``.

    Nothing is replaced unless the sha256 matches and every required binary is in the
    tarball: all are staged as ``.NAME.new`` first, then renamed over the old ones.
    A mismatch names the file and both digests and deletes the download. Runs under
    ``set -e``.
    """
    t, d = shlex.quote(tarball), shlex.quote(bin_dir)
    names = [*binaries, *optional]
    targets = ", ".join(f"{bin_dir}/{b}" for b in binaries)
    cmd = [
        f"chmod 600 {t}; actual=$(sha256sum {t} | cut -d' ' -f1); ",
        f'if [ "$actual" != {sha256} ]; then ',
        f'echo "sha256 mismatch for {tarball}: expected {sha256}, got $actual;'
        f' {targets} left unchanged" >&2; rm -f {t}; exit 1; fi; ',
        # Unpacked next to the binaries: staged by a rename, not a copy of each binary.
        f"tmp=$(mktemp -d {d}/.unpack-XXXXXX); {on_exit(REMOVE_TMP)}; ",
        f'tar -xzf {t} -C "$tmp"; ',
    ]
    for i, name in enumerate(names):
        b = shlex.quote(name)
        cmd.append(f'src{i}=$(find "$tmp" -maxdepth 3 -type f -name {b} | head -n1); ')
        if name in binaries:
            cmd.append(
                f'[ -n "$src{i}" ] || {{ echo "{name} not found in {tarball};'
                f' {targets} left unchanged" >&2; exit 1; }}; '
            )
    for i, name in enumerate(names):
        b = shlex.quote(name)
        stage = f'chown root:root "$src{i}"; chmod 0755 "$src{i}"; mv -f "$src{i}" {d}/.{b}.new'
        cmd.append(f'if [ -n "$src{i}" ]; then {stage}; fi; ')
    for i, name in enumerate(names):
        b = shlex.quote(name)
        cmd.append(f'if [ -n "$src{i}" ]; then mv -f {d}/.{b}.new {d}/{b}; fi; ')
    return "".join(cmd).rstrip("; ")


def fetch_command(url: str, tarball: str, sha256: str, binaries: Sequence[str]) -> str:
    """Download ``url`` to ``tarball`` with curl or wget, unless it already holds the
    expected ``sha256`` (a run that stopped after its download). A failed download leaves
    no file behind and names the URL."""
    t, part, u = shlex.quote(tarball), shlex.quote(f"{tarball}.part"), shlex.quote(url)
    unchanged = ", ".join(binaries)
    return (
        f"if ! printf '%s  %s\\n' {sha256} {t} | sha256sum -c --status 2>/dev/null; then "
        f"rm -f {part}; "
        f"if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 2 -o {part} {u}; "
        f"elif command -v wget >/dev/null 2>&1; then wget -q -O {part} {u}; "
        f'else echo "neither curl nor wget is installed" >&2; false; fi '
        f'|| {{ echo "cannot download {url}; {unchanged} left unchanged" >&2; '
        f"rm -f {part}; exit 1; }}; "
        f"mv -f {part} {t}; fi"
    )


def one_command(*steps: str) -> str:
    """The non-empty ``steps`` as one command that stops at the first failure (so
    nothing runs after a failed download or install)."""
    return "; ".join(["set -e", *filter(None, steps)])
