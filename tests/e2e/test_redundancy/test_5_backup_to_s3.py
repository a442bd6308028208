"""Phase 4, continued: the backup uploaded to a real S3 server."""

from __future__ import annotations

import pytest

from tests import testbed as tb

from ..conftest import Run, deploy
from .helpers import Ha, inventory, scan_controller

pytestmark = pytest.mark.e2e


S3_BUCKET, S3_PREFIX = "etcd-backups", "prod/ca/"
S3_ACCESS, S3_SECRET = "etcdpkibackup", "S3-secret-of-the-test-bed-0123456789"


@pytest.fixture(scope="module")
def object_store(failed_over):
    """A real S3 server (Versity S3 Gateway: https, SigV4 checked) on the bed."""
    store = tb.start_object_store(S3_ACCESS, S3_SECRET, [S3_BUCKET])
    yield store
    tb.docker("rm", "-f", store.container, check=False)


def s3_backup(ha: Ha, store: tb.ObjectStore, env: dict[str, str], **data) -> Run:
    settings = {
        "backup_s3_endpoint": store.endpoint,
        "backup_s3_bucket": S3_BUCKET,
        "backup_s3_prefix": S3_PREFIX,
        "backup_s3_ca_file": str(store.ca_file),
        **data,
    }
    inv = inventory(ha, "s3", "etcd-k8s-2", ["etcd-k8s-2", "etcd-k8s-1"], **settings)
    return deploy(inv, "-vv", deploy_file="backup.py", env=env)


def test_backup_is_uploaded_to_s3_when_configured(failed_over, object_store):
    ha = failed_over
    before = set(ha.backup_dir.iterdir())
    env = {"AWS_ACCESS_KEY_ID": S3_ACCESS, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    run = s3_backup(ha, object_store, env)
    assert run.rc == 0, run.output[-4000:]
    (local,) = set(ha.backup_dir.iterdir()) - before
    # Read back from the server's own storage, not through our client.
    stored = f"{tb.OBJECT_STORE_ROOT}/{S3_BUCKET}/{S3_PREFIX}{local.name}"
    remote = tb.run(["docker", "exec", object_store.container, "cat", stored]).stdout
    assert remote == local.read_text() and remote.startswith("-----BEGIN AGE ENCRYPTED FILE")
    assert f"{object_store.endpoint}/{S3_BUCKET}/{S3_PREFIX}{local.name}" in run.output
    assert S3_SECRET not in run.output
    scan_controller(ha, run.output)


def test_s3_upload_problems_are_reported_clearly(failed_over, object_store):
    ha = failed_over
    count = len(list(ha.backup_dir.iterdir()))
    # No credentials: refused before any host is touched (no new backup).
    run = s3_backup(ha, object_store, {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert run.rc != 0
    assert "no AWS credentials were found on this controller" in run.output
    assert len(list(ha.backup_dir.iterdir())) == count
    # A wrong secret: the server refuses the signature; the local backup is kept.
    wrong = {"AWS_ACCESS_KEY_ID": S3_ACCESS, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    run = s3_backup(ha, object_store, wrong)
    # The server answers SignatureDoesNotMatch, or may reset the connection before the
    # body is sent: either way the upload is reported as failed.
    assert run.rc != 0 and "but its upload to S3 failed" in run.output, run.output[-4000:]
    assert "the backup is in" in run.output and "not-the-secret" not in run.output
    assert "Traceback" not in run.output  # the message alone, not pyinfra's traceback
    assert len(list(ha.backup_dir.iterdir())) == count + 1
    # The server's certificate is verified: without its CA the upload is refused.
    good = {"AWS_ACCESS_KEY_ID": S3_ACCESS, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    run = s3_backup(ha, object_store, good, backup_s3_ca_file="")
    assert run.rc != 0 and "CERTIFICATE_VERIFY_FAILED" in run.output
    assert S3_SECRET not in run.output
