from __future__ import annotations

from pathlib import Path

import pytest

from recflow.core.artifacts import LocalArtifactStore, join, store_for
from recflow.core.config import Settings


def test_local_store_round_trip(tmp_path: Path) -> None:
    store = LocalArtifactStore()
    base = (tmp_path / "store").as_uri()
    uri = store.put_bytes(b"hello", join(base, "a", "b.txt"))
    assert store.exists(uri)
    assert store.get_bytes(uri) == b"hello"
    source = tmp_path / "f.bin"
    source.write_bytes(b"\x00\x01")
    store.put_file(source, join(base, "c.bin"))
    assert store.list(base) == [join(base, "a", "b.txt"), join(base, "c.bin")]
    assert store.get_file(join(base, "c.bin"), tmp_path / "out" / "c.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        store.get_bytes(join(base, "missing"))


def test_store_for_picks_by_scheme(settings: Settings) -> None:
    assert isinstance(store_for(settings), LocalArtifactStore)
    with pytest.raises(ValueError, match="scheme 'gs' is not file or s3"):
        store_for(settings, "gs://bucket/x")


def test_a_bucket_that_does_not_exist_is_a_setting_to_fix(tmp_path: Path) -> None:
    """S3's NoSuchBucket was an infrastructure error, retried, whose incident (from snapshot) said to
    fix the warehouse; it is a ConfigError naming RECFLOW_ARTIFACT_ROOT, as S3 answers it to a listing
    and to an upload (boto3 wraps that one in S3UploadFailedError)."""
    import boto3
    from botocore.stub import Stubber

    from recflow.core.artifacts import S3ArtifactStore
    from recflow.core.errors import ConfigError

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    said = "The specified bucket does not exist"
    stub.add_client_error("list_objects_v2", service_error_code="NoSuchBucket", service_message=said)
    stub.add_client_error("put_object", service_error_code="NoSuchBucket", service_message=said)
    stub.add_client_error("list_objects_v2", service_error_code="NoSuchBucket", service_message=said)
    stub.add_client_error("list_objects_v2", service_error_code="AccessDenied", service_message="no")
    stub.activate()
    store = S3ArtifactStore(client)
    for attempt in (
        lambda: store.exists("s3://walkprod-buckt/recflow/x"),
        lambda: store.put_bytes(b"x", "s3://walkprod-buckt/recflow/x"),
    ):
        with pytest.raises(ConfigError, match="RECFLOW_ARTIFACT_ROOT") as refused:
            attempt()
        assert "does not exist" in str(refused.value) and not refused.value.retryable
        assert "'walkprod-buckt'" in str(refused.value)  # the bucket, whichever setting named it
    with pytest.raises(ConfigError) as nested:  # delete_tree asks exists first: said once, not twice
        store.delete_tree("s3://walkprod-buckt/recflow/x")
    assert str(nested.value).count("create it") == 1
    with pytest.raises(Exception, match="AccessDenied") as other:  # anything else stays what it was
        store.exists("s3://walkprod-buckt/recflow/x")
    assert not isinstance(other.value, ConfigError)


def test_an_object_that_is_not_there_is_named_as_the_local_store_names_it(tmp_path: Path) -> None:
    """S3's answer to a read of a missing key (``An error occurred (404) when calling the HeadObject
    operation: Not Found``) named no key: the S3 store says FileNotFoundError with the URI, as the local
    store does for a missing file."""
    import boto3
    from botocore.stub import Stubber

    from recflow.core.artifacts import S3ArtifactStore

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
    stub.add_response("head_bucket", {}, {"Bucket": "acme-ml"})  # the bucket is there: the key is not
    stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
    stub.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
    stub.activate()
    store = S3ArtifactStore(client)
    with pytest.raises(
        FileNotFoundError, match=r"^artifact s3://acme-ml/models/gone\.tar\.gz does not exist$"
    ):
        store.get_file("s3://acme-ml/models/gone.tar.gz", tmp_path / "gone.tar.gz")
    with pytest.raises(FileNotFoundError, match=r"^artifact s3://acme-ml/manifest\.json does not exist$"):
        store.get_bytes("s3://acme-ml/manifest.json")
    with pytest.raises(Exception, match="AccessDenied") as other:  # anything else stays what it was
        store.get_bytes("s3://acme-ml/manifest.json")
    assert not isinstance(other.value, FileNotFoundError)
    # HeadObject answers 404 for a bucket that does not exist as well: that is the bucket's ConfigError
    stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
    stub.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
    from recflow.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"the S3 bucket 'acme-m1' does not exist"):
        store.get_file("s3://acme-m1/models/gone.tar.gz", tmp_path / "gone.tar.gz")
    local = store_for(Settings.from_env({"RECFLOW_HOME": str(tmp_path)}))
    with pytest.raises(FileNotFoundError, match=r"^artifact file:///.*/nothing does not exist$"):
        local.get_bytes((tmp_path / "nothing").as_uri())


@pytest.mark.parametrize("root", ["s3:/bucket/recflow", "bucket/recflow", "s3://Bucket/x", "s3:///x"])
def test_an_artifact_root_that_is_no_s3_or_file_uri_is_refused_when_read(root: str, tmp_path: Path) -> None:
    from recflow.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"RECFLOW_ARTIFACT_ROOT=.*is not s3://bucket/prefix"):
        Settings.from_env({"RECFLOW_HOME": str(tmp_path), "RECFLOW_ARTIFACT_ROOT": root})
    for fine in ("s3://acme-ml/recflow", "s3://b/p", (tmp_path / "a").as_uri()):
        assert Settings.from_env({"RECFLOW_HOME": str(tmp_path), "RECFLOW_ARTIFACT_ROOT": fine}).artifact_root
