"""Custom pyinfra facts for the etcd PKI. Each returns public material only."""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FactBase

from etcd_pki.certs import CertOnHost, parse_state_output
from etcd_pki.plan import CertSpec

# A binary's identity for the version marker: replaced or rewritten, it differs.
FILE_IDENTITY = "stat -c '%s %Y %i'"


class StepVersions(FactBase):
    """Installed versions of step / step-ca in ``bin_dir``: ``{"step": "0.30.6", ...}``.

    .. code:: python

        host.get_fact(StepVersions, bin_dir="/opt/bin")
    """

    default = dict

    def command(self, bin_dir: str) -> str:
        # The version line recorded at install (`version_marker_command`) while the
        # binary is the same file (size, mtime, inode); else ask the binary (~25 ms).
        d = shlex.quote(bin_dir)
        return (
            f"for b in step step-ca; do f={d}/$b; [ -x $f ] || continue; "
            f"id=$({FILE_IDENTITY} $f); v=; "
            f'{{ read -r s m i v < {d}/.$b.version && [ "$s $m $i" = "$id" ]; }} 2>/dev/null'
            ' || v=$($f version 2>/dev/null | head -n1); echo "$b $v"; done; true'
        )

    def process(self, output: list[str]) -> dict[str, str]:
        versions = {}
        for line in output:
            binary, _, text = line.partition(" ")
            # "Smallstep CLI/0.30.6 (linux/amd64)" -> "0.30.6"
            word = next((w for w in text.split() if "/" in w and w[0].isalpha()), "")
            versions[binary] = word.partition("/")[2]
        return versions


def version_marker_command(bin_dir: str, binary: str) -> str:
    """Record ``binary``'s version line with the file's identity, for `StepVersions`."""
    f, marker = shlex.quote(f"{bin_dir}/{binary}"), shlex.quote(f"{bin_dir}/.{binary}.version")
    return (
        f"printf '%s %s\\n' \"$({FILE_IDENTITY} {f})\" "
        f'"$({f} version 2>/dev/null | head -n1)" > {marker}'
    )


class EtcdVersions(FactBase):
    """Versions the etcd binaries in ``bin_dir`` report: ``{"etcd": "3.5.16", ...}``
    (etcd, etcdctl, etcdutl; a binary that is missing is absent, one that prints no
    version maps to "").

    .. code:: python

        host.get_fact(EtcdVersions, bin_dir="/opt/bin")
    """

    default = dict

    def command(self, bin_dir: str) -> str:
        d = shlex.quote(bin_dir)
        # "etcd Version: 3.5.16", "etcdctl version: 3.5.16", "etcdutl version: 3.5.16"
        return (
            f'[ -x {d}/etcd ] && echo "etcd $({d}/etcd --version 2>/dev/null | head -n1)"; '
            f"for b in etcdctl etcdutl; do [ -x {d}/$b ] && "
            f'echo "$b $({d}/$b version 2>/dev/null | head -n1)"; done; true'
        )

    def process(self, output: list[str]) -> dict[str, str]:
        versions = {}
        for line in output:
            binary, _, text = line.partition(" ")
            label, colon, version = text.partition(":")
            ok = colon and label.lower().endswith("version")
            versions[binary] = version.strip() if ok else ""
        return versions


class PublicFile(FactBase):
    """Content of a public file (a certificate), or None when it is missing."""

    def command(self, path: str) -> str:
        p = shlex.quote(path)
        return f"if [ -f {p} ]; then cat {p}; else echo __missing__; fi"

    def process(self, output: list[str]) -> str | None:
        if output == ["__missing__"]:
            return None
        return "\n".join(output) + "\n"


class NewestPublicFile(PublicFile):
    """Content of the last, by name, of the public files ``directory/prefix*suffix`` (time
    stamped names sort in time), or None when there is none."""

    def command(self, directory: str, prefix: str, suffix: str) -> str:
        pattern = f"{shlex.quote(directory.rstrip('/') + '/' + prefix)}*{shlex.quote(suffix)}"
        return (
            f"f=$(ls -1 {pattern} 2>/dev/null | tail -n 1); "
            'if [ -n "$f" ] && [ -f "$f" ]; then cat "$f"; else echo __missing__; fi'
        )


class CertStates(FactBase):
    """Each planned certificate as found on the host: chain, public half of the key,
    owner and mode of both files. The private key itself never leaves the host.

    .. code:: python

        host.get_fact(CertStates, certs=plan.certs, step="/opt/bin/step")
    """

    default = dict

    def command(self, certs: tuple[CertSpec, ...], step: str) -> str:
        parts = []
        for cert in certs:
            crt, key = shlex.quote(cert.crt), shlex.quote(cert.key)
            parts.append(
                f"echo '==> {cert.name}'; "
                f"if [ -f {crt} ]; then echo \"crt-stat: $(stat -c '%U %a' {crt})\"; "
                f"cat {crt}; fi; "
                f"if [ -f {key} ]; then echo \"key-stat: $(stat -c '%U %a' {key})\"; "
                # openssl when there (~5 ms), else step (~25 ms): the same PEM
                f"{{ openssl pkey -in {key} -pubout 2>/dev/null || "
                f"{shlex.quote(step)} crypto key public {key} 2>/dev/null; }}; fi"
            )
        return "; ".join(parts) + "; true"

    def process(self, output: list[str]) -> dict[str, CertOnHost]:
        return parse_state_output(output)


class CaClaims(FactBase):
    """The certificate duration claims and the x509 template (`template`, the text) of
    step-ca's ca.json (None if there is no CA). Public: no key is read."""

    def command(self, ca_json: str) -> str:
        p = shlex.quote(ca_json)
        return (
            f"if [ -f {p} ]; then grep -oE "
            f'\'"(min|max|default)TLSCertDuration": *"[^"]*"\' {p}; '
            f'grep -oE \'"template": *"([^"\\\\]|\\\\.)*"\' {p}; echo __ca__; fi; true'
        )

    def process(self, output: list[str]) -> dict[str, str] | None:
        if "__ca__" not in output:
            return None
        claims = {}
        for line in output:
            key, _, value = line.partition(":")
            key = key.strip().strip('"')
            if key == "template":
                try:
                    claims[key] = json.loads(value.strip())
                except ValueError:
                    claims[key] = ""
            elif value:
                claims[key] = value.strip().strip('"')
        return claims


class FileBase64(FactBase):
    """A public binary file (a DER CRL) as base64 text, or None when it is missing.

    .. code:: python

        host.get_fact(FileBase64, path="/etc/etcd/ssl/crl.der")
    """

    def command(self, path: str) -> str:
        p = shlex.quote(path)
        return f"if [ -f {p} ]; then base64 -w0 {p}; echo; else echo __missing__; fi"

    def process(self, output: list[str]) -> str | None:
        if output == ["__missing__"]:
            return None
        return "".join(output)


class HttpsBase64(FactBase):
    """What ``url`` serves (public: the CA's CRL) as base64, fetched with curl or wget and
    verified against ``root``; None when it cannot be fetched.

    .. code:: python

        host.get_fact(HttpsBase64, url="https://127.0.0.1:9000/1.0/crl", root="/etc/...")
    """

    def command(self, url: str, root: str) -> str:
        u, r = shlex.quote(url), shlex.quote(root)
        return (
            f"o=$(if command -v curl >/dev/null; then curl -fsS --max-time 5 --cacert {r} {u}"
            f" | base64 -w0; else wget -q -T 5 --ca-certificate={r} -O- {u} | base64 -w0; fi"
            ' 2>/dev/null) && [ -n "$o" ] && echo "$o" || echo __missing__'
        )

    def process(self, output: list[str]) -> str | None:
        if output == ["__missing__"] or not output:
            return None
        return "".join(output)
