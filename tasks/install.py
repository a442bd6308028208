"""Install release tarballs into `bin_dir`, sha256-verified before anything is replaced:
the pinned `step` (every host) and `step-ca` (cert-managers), and etcd when
`etcd_install_source = "release"`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.server import Arch
from pyinfra.operations import server

from etcd_pki.commands.files import directories_command
from etcd_pki.commands.install import fetch_command, install_command, one_command
from etcd_pki.plan import HostPlan
from etcd_pki.release import (
    ETCD_ARCHES,
    GITHUB_BASE,
    Artefact,
    EtcdRelease,
    arch_for,
    checksum_from,
    controller_dir,
    fetch_checksums,
)
from etcd_pki.settings import Settings
from facts.pki import EtcdVersions, StepVersions, version_marker_command
from facts.snapshot import Want
from tasks import batch
from tasks.run import fact_before_run, fact_want, snapshot, this_host

DOWNLOAD_DIR = "/var/cache/etcd-pki"


def _dir_modes(bin_dir: str) -> dict[str, str]:
    """The directories every install needs, with their modes (the cache is root's alone)."""
    return {bin_dir: "755", DOWNLOAD_DIR: "700"}


def reads(me: HostPlan) -> Want:
    s = me.settings
    want = (
        fact_want(StepVersions, bin_dir=s.bin_dir)
        | fact_want(Arch)
        | Want.of(stat=list(_dir_modes(s.bin_dir)))
    )
    if me.is_etcd and s.etcd_install_source == "release":
        want |= fact_want(EtcdVersions, bin_dir=s.bin_dir)
    return want


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


def _dirs_to_make(bin_dir: str) -> dict[str, str]:
    """The binaries' and the download cache's directories that are missing or of another
    mode, with the mode each must have."""
    before = snapshot(Want.of(stat=list(_dir_modes(bin_dir))))
    return {
        d: m
        for d, m in _dir_modes(bin_dir).items()
        if not before.is_directory(d, "root", "root", m)
    }


@dataclass(frozen=True)
class Tarball:
    """A release tarball to install from: where it is, its sha256, what it holds."""

    location: str  # URL the host downloads, or a file on the controller
    name: str
    from_controller: bool
    sha256: str
    binaries: Sequence[str]  # each must be in the tarball
    bin_dir: str
    dirs: Mapping[str, str]  # from `_dirs_to_make`, for the first install of a run
    optional: Sequence[str] = ()  # installed when the tarball holds them
    then: str = ""  # runs after a good install

    def command(self) -> str:
        """The command that gets the tarball into the host's download cache, verifies
        its sha256 and installs the binaries.

        A host that downloads does all of it in that command (the directories first). A
        controller file is uploaded by operations added here, before whatever runs the
        command.
        """
        tarball = f"{DOWNLOAD_DIR}/{self.name}"
        install = install_command(tarball, self.sha256, self.binaries, self.bin_dir, self.optional)
        if not self.from_controller:
            fetch = fetch_command(self.location, tarball, self.sha256, self.binaries)
            return one_command(directories_command(self.dirs), fetch, install, self.then)
        if not Path(self.location).is_file():
            raise PyinfraError(
                f"host {this_host().name}: {self.location} is not a file on the controller"
            )
        if self.dirs:  # the upload needs them
            batch.directories(name=f"Directories {' and '.join(self.dirs)}", modes=self.dirs)
        # Verified by the install command (sha256), like a download.
        batch.upload(
            name=f"Upload {self.name} from the controller", src=self.location, dest=tarball
        )
        return one_command(install, self.then)

    def install(self, label: str) -> OperationMeta:
        """:meth:`command` as an operation named for ``label``; returns it."""
        verb = "Install" if self.from_controller else f"Download {self.name}, install"
        return server.shell(name=f"{verb} {label} (sha256 verified)", commands=[self.command()])


def _step_tarballs(me: HostPlan, binaries: Mapping[str, str]) -> list[Tarball]:
    """The tarball of each of ``binaries`` ({name: version}) for ``me``; the first one
    makes the directories."""
    if not binaries:
        return []
    s = me.settings
    try:
        arch = arch_for(fact_before_run(Arch))
    except ValueError as e:
        raise PyinfraError(f"host {me.name}: {e}") from None
    base = source_base(s)
    dirs = _dirs_to_make(s.bin_dir)
    tarballs = []
    for binary, version in binaries.items():
        artefact = Artefact(binary, version, arch)
        pins = s.step_sha256 if binary == "step" else s.step_ca_sha256
        try:
            sha256 = expected_sha256(base, tuple(sorted(pins.items())), artefact)
        except PyinfraError as e:
            raise PyinfraError(f"host {me.name}: {e}") from None
        tarballs.append(
            Tarball(
                location=artefact.location(base),
                name=artefact.tarball,
                from_controller=s.install_source == "controller",
                sha256=sha256,
                binaries=[binary],
                bin_dir=s.bin_dir,
                dirs=dirs if not tarballs else {},
                then=version_marker_command(s.bin_dir, binary),
            )
        )
    return tarballs


def _missing(me: HostPlan, step: bool) -> dict[str, str]:
    """{binary: pinned version} of those not installed at that version before the run
    (`step` only when ``step``)."""
    s = me.settings
    wanted = {"step": s.step_version} if step else {}
    if me.is_cert_manager:
        wanted["step-ca"] = s.step_ca_version
    installed = fact_before_run(StepVersions, bin_dir=s.bin_dir)
    return {b: v for b, v in wanted.items() if installed.get(b) != v}


@deploy("Install step binaries")
def install_step(step: bool = True) -> None:
    """Install `step` on every host and `step-ca` on cert-managers, into `bin_dir`.

    Re-runs download nothing when the installed version is the pinned one. With
    ``step=False`` this host's `step` is left to :func:`step_command` (a new host gets
    it in the command that issues its first certificates).

    .. code:: python

        install_step()
    """
    me = this_host()
    missing = _missing(me, step)
    for tarball, (binary, version) in zip(
        _step_tarballs(me, missing), missing.items(), strict=True
    ):
        tarball.install(f"{binary} {version}")
    dirs = _dirs_to_make(me.settings.bin_dir)
    if dirs and not missing:  # an install makes them; else an owner or mode went wrong
        batch.directories(name=f"Owner and mode of {' and '.join(dirs)}", modes=dirs)


def step_command(me: HostPlan) -> str:
    """The command that installs the pinned `step` on ``me`` ("" when it has it), for a
    caller to run first in its own command. Uploads from the controller are added as
    operations here.

    .. code:: python

        install = step_command(this_host())
    """
    missing = _missing(me, step=True)
    if "step" not in missing:
        return ""
    (tarball,) = _step_tarballs(me, {"step": missing["step"]})
    return tarball.command()


@deploy("Install etcd from the release tarball")
def install_etcd_release() -> None:
    """Install etcd, etcdctl (and etcdutl if present) from the official tarball
    ``{etcd_release_url}/v{version}/etcd-v{version}-linux-{arch}.tar.gz`` into `bin_dir`,
    verified against ``etcd_sha256[arch]``.

    An http(s) `etcd_release_url` is downloaded by each host; a controller directory
    (absolute path or file:// URL) is uploaded. Re-runs fetch nothing when etcd and
    etcdctl already report `etcd_version`. A running etcd is restarted onto new
    binaries one member at a time.

    .. code:: python

        install_etcd_release()
    """
    me = this_host()
    s = me.settings
    installed = fact_before_run(EtcdVersions, bin_dir=s.bin_dir)
    if all(installed.get(b) == s.etcd_version for b in EtcdRelease.BINARIES):
        return
    try:
        arch = arch_for(fact_before_run(Arch), ETCD_ARCHES, "etcd")
    except ValueError as e:
        raise PyinfraError(f"host {me.name}: {e}") from None
    sha256 = s.etcd_sha256.get(arch)
    if not sha256:
        raise PyinfraError(
            f"host {me.name}: `etcd_sha256` has no pin for architecture {arch!r} "
            f"(pinned: {', '.join(sorted(s.etcd_sha256)) or 'none'})"
        )
    release = EtcdRelease(s.etcd_version, arch)
    local_dir = controller_dir(s.etcd_release_url)
    installed_op = Tarball(
        location=release.location(local_dir or s.etcd_release_url),
        name=release.tarball,
        from_controller=local_dir is not None,
        sha256=sha256,
        binaries=EtcdRelease.BINARIES,
        optional=EtcdRelease.OPTIONAL,
        bin_dir=s.bin_dir,
        dirs=_dirs_to_make(s.bin_dir),
    ).install(f"etcd {s.etcd_version}")
    # An upgrade: the running member keeps the old binary until it restarts.
    # Type=notify: each restart returns once the member serves again.
    service = f"{s.etcd_service_name}.service"
    server.shell(
        name=f"Restart {service} if running (new etcd binaries)",
        commands=[
            f"if systemctl is-active --quiet {service}; then systemctl restart {service}; fi"
        ],
        _if=installed_op.did_change,
        _serial=True,
    )
