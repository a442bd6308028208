"""Upload of encrypted backups to S3-compatible storage (AWS S3, MinIO, Ceph RGW,
Garage, ...) with boto3: botocore signs (SigV4) and finds the credentials the way every
AWS tool does (environment, shared config and profiles, SSO, instance metadata,
`credential_process`), never from group_data.

The controller uploads the ciphertext it already holds, so the storage never sees
anything but age output and the nodes need no credentials. Requests are path-style
(``ENDPOINT/BUCKET/KEY``), which every S3-compatible server accepts. A redirect is never
followed (it would send a signed request elsewhere), a plain http:// endpoint is refused
unless `backup_s3_allow_http`, and nothing secret is printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, urlparse

# S3 bucket naming rules (general purpose buckets): 3-63 of [a-z0-9.-], starting and
# ending with a letter or digit.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_RE = re.compile(r"^(?:[A-Za-z0-9._-]+/)*$")
_REGION_RE = re.compile(r"^[a-z0-9-]{1,32}$")


class S3Error(RuntimeError):
    """An upload failed; the message names the object and the server's answer."""


@dataclass(frozen=True)
class Credentials:
    """An explicit access key pair (tests, scripts); ``repr`` never shows the secret.
    Without one, boto3's own chain finds the credentials."""

    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def target_problems(
    endpoint: object, bucket: object, prefix: object, region: object, allow_http: bool = False
) -> list[str]:
    """Problems with the `backup_s3_*` settings; none when `backup_s3_endpoint` is empty."""
    if not endpoint:
        return []
    out = []
    if str(endpoint).lower().startswith("http://") and not allow_http:
        out.append(
            f"`backup_s3_endpoint` = {endpoint!r} is plain http: requests could be replayed "
            "or dropped on the way; use https, or set backup_s3_allow_http = True"
        )
    parsed = urlparse(str(endpoint))
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        out.append(f"`backup_s3_endpoint` = {endpoint!r} must be an http(s):// URL")
    elif parsed.username or parsed.password:
        out.append(
            "`backup_s3_endpoint` must not carry credentials: the controller's AWS "
            "credentials (environment, profile, ...) are used instead"
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


def _client(endpoint: str, region: str, ca_file: str | None, timeout: float, credentials):
    import boto3
    from botocore.config import Config

    keys = {}
    if credentials is not None:
        keys = {
            "aws_access_key_id": credentials.access_key,
            "aws_secret_access_key": credentials.secret_key,
            "aws_session_token": credentials.session_token,
        }
    session = boto3.session.Session(**keys)
    config = Config(
        region_name=region,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": 2, "mode": "standard"},
        connect_timeout=timeout,
        read_timeout=timeout,
        # A plain PUT with its payload hash: S3-compatible servers need no aws-chunked.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    client = session.client("s3", endpoint_url=endpoint, config=config, verify=ca_file or True)

    def no_redirect(context, **_):  # botocore would re-send the signed request elsewhere
        context.setdefault("s3_redirect", {})["redirected"] = True

    client.meta.events.register("before-call.s3", no_redirect)
    return client


def has_credentials() -> bool:
    """Whether boto3's chain finds credentials on this controller."""
    import boto3

    return boto3.session.Session().get_credentials() is not None


def _error(method: str, url: str, e: Exception) -> S3Error:
    from botocore.exceptions import ClientError

    if isinstance(e, ClientError):
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        error = e.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", "")
        return S3Error(
            f"{method} {url}: HTTP {status} {code}" + (f": {message}" if message else "")
        )
    return S3Error(f"{method} {url}: {type(e).__name__}: {e}")


def put_object(
    endpoint: str,
    bucket: str,
    key: str,
    body: bytes,
    credentials: Credentials | None = None,
    region: str = "us-east-1",
    ca_file: str | None = None,
    timeout: float = 60,
) -> str:
    """Upload ``body`` as ``key`` and check it arrived whole (HEAD: same size); its URL.

    Raises S3Error with the server's error code (NoSuchBucket, AccessDenied,
    SignatureDoesNotMatch, ...) or the connection problem.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    url = object_url(endpoint, bucket, key)
    client = _client(endpoint, region, ca_file, timeout, credentials)
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/octet-stream")
    except (BotoCoreError, ClientError) as e:
        raise _error("PUT", url, e) from None
    try:
        size = client.head_object(Bucket=bucket, Key=key).get("ContentLength")
    except (BotoCoreError, ClientError) as e:
        raise _error("HEAD", url, e) from None
    if size != len(body):
        raise S3Error(f"HEAD {url} after the upload: {size} bytes (sent {len(body)})")
    return url
