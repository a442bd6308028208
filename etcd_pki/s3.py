"""Upload of encrypted backups to S3-compatible storage (AWS S3, MinIO, Ceph RGW,
Garage, ...), signed with AWS Signature Version 4.

The controller uploads the ciphertext it already holds, so the storage never sees
anything but age output and the nodes need no credentials. Requests are path-style
(``ENDPOINT/BUCKET/KEY``), which every S3-compatible server accepts. Credentials come
from the controller's environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
optionally ``AWS_SESSION_TOKEN``), never from group_data, and are never printed: SigV4
sends only a signature derived from the secret.

Standard library only (hmac, hashlib, urllib): no pyinfra import, no SDK dependency.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, urlparse

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
# S3 bucket naming rules (general purpose buckets): 3-63 of [a-z0-9.-], starting and
# ending with a letter or digit.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_RE = re.compile(r"^(?:[A-Za-z0-9._-]+/)*$")
_REGION_RE = re.compile(r"^[a-z0-9-]{1,32}$")


class S3Error(RuntimeError):
    """An upload failed; the message names the object and the server's answer."""


@dataclass(frozen=True)
class Credentials:
    """An access key pair; ``repr`` and ``str`` never show the secret or the token."""

    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Credentials:
        """Read ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (and the optional
        ``AWS_SESSION_TOKEN``); ValueError naming what is missing."""
        missing = [n for n in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not environ.get(n)]
        if missing:
            raise ValueError(
                f"{' and '.join(missing)} not set in the controller's environment "
                "(S3 credentials are read from there, never from group_data)"
            )
        return cls(
            environ["AWS_ACCESS_KEY_ID"],
            environ["AWS_SECRET_ACCESS_KEY"],
            environ.get("AWS_SESSION_TOKEN") or None,
        )


def target_problems(endpoint: object, bucket: object, prefix: object, region: object) -> list[str]:
    """Problems with the `backup_s3_*` settings; none when `backup_s3_endpoint` is empty."""
    if not endpoint:
        return []
    out = []
    parsed = urlparse(str(endpoint))
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        out.append(f"`backup_s3_endpoint` = {endpoint!r} must be an http(s):// URL")
    elif parsed.username or parsed.password:
        out.append(
            "`backup_s3_endpoint` must not carry credentials: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the controller's environment instead"
        )
    elif parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        out.append(
            f"`backup_s3_endpoint` = {endpoint!r} must be scheme://host[:port] only; "
            "the bucket goes in `backup_s3_bucket`, the folder in `backup_s3_prefix`"
        )
    if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket):
        out.append(
            f"`backup_s3_bucket` = {bucket!r} is not an S3 bucket name "
            "(3-63 characters of a-z, 0-9, '.', '-')"
        )
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        out.append(
            f"`backup_s3_prefix` = {prefix!r} must be empty or folder names of "
            "[A-Za-z0-9._-] each ending in '/' (like 'etcd-pki/prod/')"
        )
    elif any(part in (".", "..") for part in prefix.split("/")):
        out.append(f"`backup_s3_prefix` = {prefix!r} must not contain '.' or '..' folders")
    if not isinstance(region, str) or not _REGION_RE.match(region):
        out.append(f"`backup_s3_region` = {region!r} is not a region name like us-east-1")
    return out


def object_url(endpoint: str, bucket: str, key: str) -> str:
    """Path-style URL of ``key`` in ``bucket``."""
    return f"{endpoint.rstrip('/')}/{bucket}/{quote(key, safe='/-_.~')}"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret_key: str, day: str, region: str, service: str = SERVICE) -> bytes:
    """The SigV4 key for one day, region and service (HMAC chain over the secret)."""
    key = _hmac(f"AWS4{secret_key}".encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def sign_headers(
    method: str,
    url: str,
    headers: Mapping[str, str],
    payload_sha256: str,
    credentials: Credentials,
    region: str,
    when: datetime,
) -> dict[str, str]:
    """``headers`` plus ``Host``, ``x-amz-date``, ``x-amz-content-sha256``, the session
    token if any, and ``Authorization``, with every header signed.

    Query strings are not supported (none of our requests has one).
    """
    parsed = urlparse(url)
    if parsed.query:
        raise ValueError("query strings are not supported")
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    signed = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
    signed["host"] = parsed.netloc
    signed["x-amz-date"] = stamp
    signed["x-amz-content-sha256"] = payload_sha256
    if credentials.session_token:
        signed["x-amz-security-token"] = credentials.session_token
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            parsed.path or "/",
            "",
            *(f"{n}:{signed[n]}" for n in names),
            "",
            ";".join(names),
            payload_sha256,
        ]
    )
    scope = f"{stamp[:8]}/{region}/{SERVICE}/aws4_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(
        signing_key(credentials.secret_key, stamp[:8], region), to_sign.encode(), hashlib.sha256
    ).hexdigest()
    signed["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return signed


def _context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file or None)


def _request(
    method: str,
    url: str,
    body: bytes,
    credentials: Credentials,
    region: str,
    ca_file: str | None,
    timeout: float,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    signed = sign_headers(
        method,
        url,
        headers or {},
        hashlib.sha256(body).hexdigest(),
        credentials,
        region,
        datetime.now(UTC),
    )
    # urllib sets Host itself from the URL; sending it twice would be refused.
    signed.pop("host")
    request = urllib.request.Request(url, data=body if method == "PUT" else None, method=method)
    for name, value in signed.items():
        request.add_header(name, value)
    context = _context(ca_file) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as e:
        try:
            answer = e.read()
        except (OSError, http.client.HTTPException):
            answer = b""  # the status is the answer; its error document was cut short
        return e.code, dict(e.headers.items()), answer
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        # A server that refuses a request may reset the connection before answering
        # (RemoteDisconnected, BadStatusLine, a broken pipe while the body is sent).
        reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
        raise S3Error(f"{method} {url}: {reason}") from None


def _error_code(body: bytes) -> str:
    """The <Code> and <Message> of an S3 error document, else the start of the body."""
    text = body.decode(errors="replace")
    code = re.search(r"<Code>([^<]*)</Code>", text)
    message = re.search(r"<Message>([^<]*)</Message>", text)
    if code:
        return code.group(1) + (f": {message.group(1)}" if message else "")
    return text.strip()[:200] or "no details"


def put_object(
    endpoint: str,
    bucket: str,
    key: str,
    body: bytes,
    credentials: Credentials,
    region: str = "us-east-1",
    ca_file: str | None = None,
    timeout: float = 60,
) -> str:
    """Upload ``body`` as ``key`` and check it arrived whole (HEAD: same size); its URL.

    Raises S3Error with the server's error code (NoSuchBucket, AccessDenied,
    SignatureDoesNotMatch, ...) or the connection problem.
    """
    url = object_url(endpoint, bucket, key)
    headers = {"content-type": "application/octet-stream"}
    status, _, answer = _request("PUT", url, body, credentials, region, ca_file, timeout, headers)
    if status != 200:
        raise S3Error(f"PUT {url}: HTTP {status} {_error_code(answer)}")
    status, head, _ = _request("HEAD", url, b"", credentials, region, ca_file, timeout)
    size = {k.lower(): v for k, v in head.items()}.get("content-length")
    if status != 200 or size != str(len(body)):
        raise S3Error(
            f"HEAD {url} after the upload: HTTP {status}, {size} bytes (sent {len(body)})"
        )
    return url
