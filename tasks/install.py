"""Install the pinned `step` (every host) and `step-ca` (cert-managers), sha256-verified."""

from __future__ import annotations

import shlex
from functools import cache

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.facts.server import Arch
from pyinfra.operations import files, server

from etcd_pki.release import GITHUB_BASE, Artefact, arch_for, checksum_from, fetch_checksums
from etcd_pki.settings import Settings
from facts.pki import StepVersions
from tasks.common import this_host

DOWNLOAD_DIR = "/var/cache/etcd-pki"


def source_base(settings: Settings) -> str:
    """URL or controller directory that holds the releases, per `install_source`."""
    return {
        "github": GITHUB_BASE,
        "mirror": settings.install_mirror_url or "",
        "controller": settings.install_controller_dir or "",
    }[settings.install_source]


@cache
def expected_sha256(base: str, pins: tuple[tuple[str, str], ...], artefact: Artefact) -> str:
    """The sha256 the tarball must have: the pin from group_data, else checksums.txt."""
    pinned = dict(pins).get(artefact.arch)
    if pinned:
        return pinned
    try:
        digest = checksum_from(fetch_checksums(base, artefact), artefact.tarball)
    except ValueError as e:
        raise PyinfraError(f"install_source: {e}") from None
    if digest is None:
        raise PyinfraError(f"install_source: {artefact.tarball} is not listed in checksums.txt")
    return digest


def _install_command(tarball: str, sha256: str, binary: str, bin_dir: str) -> str:
    """Verify, unpack and atomically replace ``bin_dir/binary``; fail loudly on mismatch."""
    t, b, d = shlex.quote(tarball), shlex.quote(binary), shlex.quote(bin_dir)
    return (
        f"set -e; actual=$(sha256sum {t} | cut -d' ' -f1); "
        f'if [ "$actual" != {sha256} ]; then '
        f'echo "sha256 mismatch for {tarball}: expected {sha256}, got $actual;'
        f' {bin_dir}/{binary} left unchanged" >&2; rm -f {t}; exit 1; fi; '
        "tmp=$(mktemp -d); trap 'rm -rf \"$tmp\"' EXIT; "
        f'tar -xzf {t} -C "$tmp"; '
        f'src=$(find "$tmp" -type f -name {b} | head -n1); '
        f'[ -n "$src" ] || {{ echo "{binary} not found in {tarball}" >&2; exit 1; }}; '
        f'install -m 0755 -o root -g root "$src" {d}/.{b}.new; '
        f"mv -f {d}/.{b}.new {d}/{b}"
    )


@deploy("Install step binaries")
def install_step() -> None:
    """Install `step` on every host and `step-ca` on cert-managers, into `bin_dir`.

    Re-runs download nothing when the installed version is the pinned one.

    .. code:: python

        install_step()
    """
    me = this_host()
    s = me.settings
    wanted = {"step": s.step_version}
    if me.is_cert_manager:
        wanted["step-ca"] = s.step_ca_version
    installed = host.get_fact(StepVersions, bin_dir=s.bin_dir)
    missing = {b: v for b, v in wanted.items() if installed.get(b) != v}
    if not missing:
        return

    try:
        arch = arch_for(host.get_fact(Arch))
    except ValueError as e:
        raise PyinfraError(f"host {me.name}: {e}") from None
    base = source_base(s)
    files.directory(name=f"Directory {s.bin_dir}", path=s.bin_dir, mode="755")
    files.directory(name=f"Download cache {DOWNLOAD_DIR}", path=DOWNLOAD_DIR, mode="700")
    for binary, version in missing.items():
        artefact = Artefact(binary, version, arch)
        pins = s.step_sha256 if binary == "step" else s.step_ca_sha256
        try:
            sha256 = expected_sha256(base, tuple(sorted(pins.items())), artefact)
        except PyinfraError as e:
            raise PyinfraError(f"host {me.name}: {e}") from None
        tarball = f"{DOWNLOAD_DIR}/{artefact.tarball}"
        if s.install_source == "controller":
            files.put(
                name=f"Upload {artefact.tarball} from the controller",
                src=artefact.location(base),
                dest=tarball,
                mode="600",
            )
        else:
            # Verified by the install command below, which names file and digests on a
            # mismatch and deletes the download (pyinfra's own check says much less).
            files.download(
                name=f"Download {artefact.tarball}",
                src=artefact.location(base),
                dest=tarball,
            )
        server.shell(
            name=f"Install {binary} {version} (sha256 verified)",
            commands=[_install_command(tarball, sha256, binary, s.bin_dir)],
        )
