"""S3-compatible object store for the backup upload: Versity S3 Gateway in a container on
the bed's network (TLS with a one-off CA, SigV4 checked, one root user).
"""

from __future__ import annotations

import ipaddress
import shlex
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import instance
from .binaries import go_install
from .engine import TestbedError, cache_dir, docker, log, write_atomic
from .image import IMAGE
from .instance import LABEL
from .network import subnet

OBJECT_STORE_MODULE = "github.com/versity/versitygw/cmd/versitygw"
OBJECT_STORE_VERSION = "1.8.0"
OBJECT_STORE_PORT = 7070
# The posix backend serves ROOT/BUCKET/KEY as objects: tests read uploads there.
OBJECT_STORE_ROOT = "/srv/s3"
# Auxiliary containers (not hosts: never in an inventory) carry this label only.
LABEL_AUX = f"{LABEL}.aux"


@dataclass(frozen=True)
class ObjectStore:
    """A running S3 server on the bed's network (TLS, SigV4 checked, one root user)."""

    container: str
    endpoint: str
    ca_file: Path  # the CA that signed the server's certificate (for backup_s3_ca_file)


def write_object_store_tls(directory: Path, ip: str) -> Path:
    """A one-off CA and a server certificate for ``ip`` in ``directory`` (cert.pem,
    key.pem, ca.pem); return ca.pem."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("test object store CA"))
        .issuer_name(name("test object store CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder().subject_name(name("objstore")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    write_atomic(directory / "cert.pem", cert.public_bytes(pem))
    write_atomic(directory / "ca.pem", ca.public_bytes(pem))
    key_bytes = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Read by versitygw inside its container (as root): 0600 is enough.
    write_atomic(directory / "key.pem", key_bytes, mode=0o600)
    return directory / "ca.pem"


def object_store_binary() -> Path:
    """Build (or reuse) versitygw at the pinned version; return its path."""
    target = cache_dir() / "bin" / f"versitygw-{OBJECT_STORE_VERSION}" / "versitygw"
    go_install(OBJECT_STORE_MODULE, OBJECT_STORE_VERSION, target)
    return target


def start_object_store(access_key: str, secret_key: str, buckets: Sequence[str]) -> ObjectStore:
    """Run versitygw in a container at .250 of the bed's network, serving https with a
    certificate of a one-off CA; ``buckets`` exist empty. Replaces an earlier one."""
    binary = object_store_binary()
    container = f"{instance.BED.prefix}objstore" if instance.BED.name else "etcd-pki-objstore"
    ip = f"{subnet().rsplit('.', 1)[0]}.250"
    tls_dir = instance.STATE_DIR / "objstore-tls"
    ca_file = write_object_store_tls(tls_dir, ip)
    docker("rm", "-f", container, check=False)
    dirs = " ".join(shlex.quote(f"{OBJECT_STORE_ROOT}/{b}") for b in buckets)
    log(
        f"starting {container} (versitygw {OBJECT_STORE_VERSION}, https://{ip}:{OBJECT_STORE_PORT})"
    )
    docker(
        "run", "-d", "--name", container, "--network", instance.NETWORK, "--ip", ip,
        "--label", f"{LABEL_AUX}={instance.BED.name or 'default'}",
        "-e", f"ROOT_ACCESS_KEY={access_key}", "-e", f"ROOT_SECRET_KEY={secret_key}",
        "-v", f"{binary}:/usr/local/bin/versitygw:ro", "-v", f"{tls_dir}:/tls:ro",
        "--entrypoint", "/bin/sh", IMAGE, "-c",
        f"mkdir -p {dirs} && exec versitygw --quiet --port :{OBJECT_STORE_PORT} "
        f"--cert /tls/cert.pem --key /tls/key.pem posix {OBJECT_STORE_ROOT}",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((ip, OBJECT_STORE_PORT), timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                logs = docker("logs", container, check=False)
                raise TestbedError(f"{container} did not listen: {logs.stderr[-500:]}") from None
            time.sleep(0.3)
    return ObjectStore(container, f"https://{ip}:{OBJECT_STORE_PORT}", ca_file)


def remove_aux_containers() -> None:
    """Remove this instance's auxiliary containers (the object store)."""
    ids = docker(
        "ps", "-aq", "--filter", f"label={LABEL_AUX}={instance.BED.name or 'default'}"
    ).stdout
    if ids.split():
        docker("rm", "-f", *ids.split())
