"""S3 upload of backups: settings checks, and boto3's exchange against a small local
server (errors, no redirects followed, size check); the e2e test uses a real S3 server."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from etcd_pki import s3
from etcd_pki.plan import build_plan
from etcd_pki.settings import ConfigError

from .conftest import seed_hosts


def test_object_urls_are_path_style_and_encoded():
    assert s3.object_url("https://s3.example:9000/", "bkt", "etcd-pki/a b.tar.age") == (
        "https://s3.example:9000/bkt/etcd-pki/a%20b.tar.age"
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("backup_s3_endpoint", "s3.example.com", "must be an http(s):// URL"),
        ("backup_s3_endpoint", "https://user:pw@s3.example.com", "must not carry credentials"),
        ("backup_s3_endpoint", "https://s3.example.com/bucket", "scheme://host[:port] only"),
        ("backup_s3_bucket", "My_Bucket", "is not an S3 bucket name"),
        ("backup_s3_prefix", "/etcd", "must be empty or folder names"),
        ("backup_s3_prefix", "etcd", "must be empty or folder names"),
        ("backup_s3_prefix", "a/../", "must not contain '.' or '..'"),
        ("backup_s3_region", "US East", "is not a region name"),
        ("backup_s3_endpoint", "http://s3.example.com", "is plain http"),
    ],
)
def test_bad_s3_settings_are_refused_naming_the_field(defaults, field, value, message):
    data = {
        "backup_s3_endpoint": "https://s3.example.com",
        "backup_s3_bucket": "backups",
        field: value,
    }
    with pytest.raises(ConfigError) as e:
        build_plan(seed_hosts(defaults, **{"etcd-k8s-1": data}))
    assert f"`{field}`" in str(e.value) and message in str(e.value)
    # The userinfo of a bad endpoint is not repeated back.
    assert "pw@" not in str(e.value)


def test_plain_http_is_accepted_only_when_allowed(defaults):
    data = {"backup_s3_endpoint": "http://s3.internal:9000", "backup_s3_bucket": "backups"}
    build_plan(seed_hosts(defaults, **{"etcd-k8s-1": {**data, "backup_s3_allow_http": True}}))


def test_s3_settings_are_ignored_while_the_endpoint_is_empty(defaults):
    build_plan(seed_hosts(defaults, **{"etcd-k8s-1": {"backup_s3_bucket": "Not Valid"}}))


class _Bucket(BaseHTTPRequestHandler):
    """One bucket in memory; refuses requests without a SigV4 Authorization header or
    with a payload hash that does not match the body."""

    objects: dict[str, bytes] = {}
    refuse: str | None = None
    puts: list[str] = []

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def _deny(self, status: int, code: str) -> None:
        body = f"<Error><Code>{code}</Code><Message>denied</Message></Error>".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        auth = self.headers.get("Authorization", "")
        self.puts.append(self.path)
        if self.refuse == "redirect":  # what AWS answers for a bucket in another region
            self.send_response(301)
            self.send_header("x-amz-bucket-region", "eu-west-3")
            self.send_header("Location", "http://elsewhere.invalid/" + self.path)
            body = b"<Error><Code>PermanentRedirect</Code><Message>moved</Message></Error>"
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None
        if self.refuse == "garbage":  # not HTTP at all, then the connection closes
            self.wfile.write(b"garbage\r\n")
            self.close_connection = True
            return None
        if self.refuse == "truncated":  # an error document cut short by a reset
            self.send_response(403)
            self.send_header("Content-Length", "500")
            self.end_headers()
            self.wfile.write(b"<Error><Code>Signa")
            self.close_connection = True
            return None
        if self.refuse:
            return self._deny(403, self.refuse)
        if not auth.startswith("AWS4-HMAC-SHA256 Credential=AK/"):
            return self._deny(403, "AccessDenied")
        if self.headers["x-amz-content-sha256"] != hashlib.sha256(body).hexdigest():
            return self._deny(400, "XAmzContentSHA256Mismatch")
        self.objects[self.path] = body
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802
        body = self.objects.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()


@pytest.fixture
def bucket() -> Iterator[str]:
    _Bucket.objects, _Bucket.refuse, _Bucket.puts = {}, None, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Bucket)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_put_object_uploads_and_checks_the_size(bucket):
    url = s3.put_object(
        bucket, "bkt", "etcd-pki/x.tar.age", b"ciphertext", s3.Credentials("AK", "SK")
    )
    assert url == f"{bucket}/bkt/etcd-pki/x.tar.age"
    assert _Bucket.objects == {"/bkt/etcd-pki/x.tar.age": b"ciphertext"}


def test_put_object_reports_the_servers_error_code(bucket):
    _Bucket.refuse = "NoSuchBucket"
    with pytest.raises(s3.S3Error, match="HTTP 403 NoSuchBucket: denied"):
        s3.put_object(bucket, "bkt", "k", b"x", s3.Credentials("AK", "SK"))


@pytest.mark.parametrize("answer", ["garbage", "truncated"])
def test_put_object_reports_a_broken_answer(bucket, answer):
    _Bucket.refuse = answer
    with pytest.raises(s3.S3Error, match=f"PUT {bucket}/bkt/k"):
        s3.put_object(bucket, "bkt", "k", b"x", s3.Credentials("AK", "SK"), timeout=5)


def test_put_object_reports_an_unreachable_endpoint():
    with pytest.raises(s3.S3Error, match="PUT http://127.0.0.1:9/bkt/k"):
        s3.put_object("http://127.0.0.1:9", "bkt", "k", b"x", s3.Credentials("AK", "SK"), timeout=5)


def test_a_redirect_is_not_followed(bucket):
    # botocore would re-sign the request for the bucket's region and send it on; the
    # upload stops instead and says where the server pointed.
    _Bucket.refuse = "redirect"
    with pytest.raises(s3.S3Error, match="HTTP 301 PermanentRedirect"):
        s3.put_object(bucket, "bkt", "k", b"x", s3.Credentials("AK", "SK"), timeout=5)
    assert _Bucket.puts == ["/bkt/k"]


def test_the_secret_key_never_shows(bucket):
    creds = s3.Credentials("AK", "s3cr3t-value", "t0ken-value")
    assert "s3cr3t-value" not in repr(creds) and "t0ken-value" not in repr(creds)
    _Bucket.refuse = "AccessDenied"
    with pytest.raises(s3.S3Error) as e:
        s3.put_object(bucket, "bkt", "k", b"x", creds, timeout=5)
    assert "s3cr3t" not in str(e.value) and "t0ken" not in str(e.value)
