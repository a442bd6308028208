"""templates/etcd-pki-crl-fetch.j2, the member's CRL fetch, run for real (sh, curl,
openssl) against a local HTTPS server that plays step-ca: a CRL that fails any check is
never installed and the installed one stays."""

from __future__ import annotations

import hashlib
import http.server
import shlex
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jinja2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from .pki_fixtures import Ca

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "etcd-pki-crl-fetch.j2"
NOW = datetime.now(UTC)


class StepCa:
    """Serves /1.0/crl and /intermediates.pem over TLS with a certificate of ``ca``."""

    def __init__(self, ca: Ca, tmp: Path) -> None:
        self.files: dict[str, bytes] = {"/intermediates.pem": ca.pem_inter.encode()}
        chain, key = ca.server()
        (tmp / "tls.crt").write_text(chain)
        (tmp / "tls.key").write_text(key)
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp / "tls.crt", tmp / "tls.key")
        (tmp / "tls.key").unlink()  # no private key left behind on the controller
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def member(tmp_path: Path) -> Iterator[tuple[Ca, StepCa, Path]]:
    ca = Ca()
    (tmp_path / "root_ca.crt").write_text(ca.root_pem)
    server = StepCa(ca, tmp_path)
    script = jinja2.Template(TEMPLATE.read_text()).render(
        crl_url=shlex.quote(f"{server.url}/1.0/crl"),
        intermediates_url=shlex.quote(f"{server.url}/intermediates.pem"),
        root=shlex.quote(str(tmp_path / "root_ca.crt")),
        dest=shlex.quote(str(tmp_path / "crl.der")),
    )
    (tmp_path / "fetch").write_text(script)
    (tmp_path / "fetch").chmod(0o755)
    yield ca, server, tmp_path
    server.stop()


def fetch(tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(tmp / "fetch")], capture_output=True, text=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_good_crl_is_installed_atomically_and_kept_when_unchanged(member):
    ca, server, tmp = member
    server.files["/1.0/crl"] = der = ca.crl((5,), number=4)
    run = fetch(tmp)
    assert run.returncode == 0, run.stderr
    installed = tmp / "crl.der"
    assert installed.read_bytes() == der
    assert oct(installed.stat().st_mode & 0o777) == "0o644"
    assert "installed CRL number 4" in run.stdout
    inode = installed.stat().st_ino
    assert fetch(tmp).returncode == 0
    assert installed.stat().st_ino == inode  # unchanged: not written again
    assert not list(tmp.glob(".crl-fetch-*"))  # its work directory is gone


def offered(ca: Ca, case: str) -> tuple[bytes, bytes | None]:
    """(the CRL served, the intermediates served instead of ours) for ``case``."""
    other = Ca(name="other")
    good = ca.crl((5,), number=4)
    if case == "wrong signature":
        return ca.crl((5,), number=5, signer=ec.generate_private_key(ec.SECP256R1())), None
    if case == "foreign CA":
        return other.crl((5,), number=5), None
    if case == "foreign CA with its own intermediate":
        return other.crl((5,), number=5), other.pem_inter.encode()
    if case == "expired":
        return ca.crl(
            (5,),
            number=5,
            this_update=NOW - timedelta(days=2),
            next_update=NOW - timedelta(hours=1),
        ), None
    if case == "truncated":
        return good[: len(good) - 20], None
    if case == "PEM, not DER":
        return b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", None
    if case == "older number":
        return ca.crl((5,), number=2, this_update=NOW - timedelta(hours=3)), None
    if case == "lower number that drops a serial":
        return ca.crl((), number=1, this_update=NOW), None
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case, message",
    [
        ("wrong signature", "not signed by this CA"),
        ("foreign CA", "not signed by this CA"),
        ("foreign CA with its own intermediate", "does not chain"),
        ("expired", "nextUpdate"),
        ("truncated", "not a DER CRL"),
        ("PEM, not DER", "not a DER CRL"),
        ("older number", "older than the installed one"),
        ("lower number that drops a serial", "drops revoked serials"),
    ],
)
def test_a_bad_crl_is_never_installed(member, case, message):
    ca, server, tmp = member
    server.files["/1.0/crl"] = ca.crl((5,), number=4, this_update=NOW - timedelta(hours=2))
    assert fetch(tmp).returncode == 0
    before = digest(tmp / "crl.der")
    server.files["/1.0/crl"], intermediates = offered(ca, case)
    if intermediates:
        server.files["/intermediates.pem"] = intermediates
    run = fetch(tmp)
    assert run.returncode == 1, run.stdout
    assert message in run.stderr and "the installed CRL is kept" in run.stderr
    assert digest(tmp / "crl.der") == before


def test_a_re_established_ca_may_number_anew_when_it_lists_everything(member):
    ca, server, tmp = member
    server.files["/1.0/crl"] = ca.crl((5, 6), number=40, this_update=NOW - timedelta(hours=2))
    assert fetch(tmp).returncode == 0
    server.files["/1.0/crl"] = new = ca.crl((5, 6, 9), number=1)  # after a failover
    run = fetch(tmp)
    assert run.returncode == 0, run.stderr
    assert (tmp / "crl.der").read_bytes() == new


def test_an_unreachable_ca_keeps_the_installed_crl(member):
    ca, server, tmp = member
    server.files["/1.0/crl"] = ca.crl((5,))
    assert fetch(tmp).returncode == 0
    before = digest(tmp / "crl.der")
    server.stop()
    run = fetch(tmp)
    assert run.returncode == 1 and "cannot fetch" in run.stderr
    assert digest(tmp / "crl.der") == before


def test_a_crl_of_another_ca_installed_before_is_replaced(member):
    """A member whose CRL came from another CA (not comparable by number) takes ours."""
    ca, server, tmp = member
    (tmp / "crl.der").write_bytes(Ca(name="old").crl((1,), number=99))
    server.files["/1.0/crl"] = ours = ca.crl((5,), number=1)
    assert fetch(tmp).returncode == 0
    assert (tmp / "crl.der").read_bytes() == ours
