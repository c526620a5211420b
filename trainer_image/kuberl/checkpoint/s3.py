"""A checkpoint store under an S3 prefix (AWS, or any S3-compatible endpoint).

Credentials come from the standard boto3 chain (environment, ~/.aws, web identity/IRSA, instance
profile), and the endpoint from `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3`, which boto3 >= 1.28 reads
itself. S3 PUTs are atomic per object, so the manifest-last protocol in store.py is all that is
needed for atomic checkpoints. Clients get short connect timeouts and few retries, so a wrong
endpoint fails in seconds with a clear CheckpointError instead of hanging the trainer or the CLI.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from typing import Any

from kuberl.checkpoint.errors import CheckpointError, StoreUnavailableError
from kuberl.checkpoint.manifest import MANIFEST_FILE
from kuberl.checkpoint.store import CheckpointStore, Entry
from kuberl.checkpoint.uri import Location

#: Larger objects go through boto3's managed (multipart, retry-per-part) upload.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
#: DeleteObjects accepts at most 1000 keys per request.
DELETE_BATCH = 1000
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
# Error codes S3 (and S3-compatible servers) answer when busy or briefly unwell: worth a later retry.
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "ServiceUnavailable",
    "InternalError",
}


def make_client(*, connect_timeout: float = 5, read_timeout: float = 60, max_attempts: int = 3) -> Any:
    """An S3 client from the default credential chain, with bounded timeouts and retries."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
    )
    return boto3.session.Session().client("s3", config=config)


def describe_error(exc: Exception, uri: str, endpoint: str | None) -> str:
    """Turn a boto3/botocore exception into a reason a user can act on."""
    from botocore import exceptions as bex

    where = f" at {endpoint}" if endpoint else ""
    if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError | bex.CredentialRetrievalError):
        return (
            f"no usable AWS credentials ({exc}); set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or a web identity / instance role"
        )
    if isinstance(exc, bex.ConnectionError):
        return f"S3 endpoint{where} is unreachable: {exc}"
    if isinstance(exc, bex.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        bucket = uri.split("/")[2]
        if code == "NoSuchBucket" or (code in ("404", "NotFound") and exc.operation_name == "HeadBucket"):
            return f"bucket {bucket!r} does not exist{where}"
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            return f"the AWS credentials were rejected ({code}: {error.get('Message', '')})"
        if code in ("AccessDenied", "403", "Forbidden") or status == 403:
            return f"access denied ({exc.operation_name}); the credentials lack permission for {uri}"
        return f"{exc.operation_name} failed: {code or status}: {error.get('Message', exc)}"
    if isinstance(exc, bex.BotoCoreError | ValueError):
        return f"{type(exc).__name__}: {exc}"
    return repr(exc)


def is_transient(exc: Exception) -> bool:
    """Whether a boto3/botocore failure may go away by itself: the endpoint unreachable or timing out,
    the connection dropped, a 5xx answer or throttling. Missing buckets, refused credentials and denied
    access are not: retrying them only delays the error."""
    from botocore import exceptions as bex

    if isinstance(exc, bex.ConnectionError | bex.HTTPClientError):
        return True
    if isinstance(exc, bex.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
    return False


class S3CheckpointStore(CheckpointStore):
    """Checkpoints as `s3://bucket/prefix/<name>/<file>` with `s3://bucket/prefix/latest`.

    `client` lets tests (and callers with their own session) inject a client; `page_size` bounds each
    ListObjectsV2 page, which the listing follows with a paginator however many keys there are.
    """

    def __init__(self, location: Location, *, client: Any = None, page_size: int = 1000) -> None:
        if location.scheme != "s3":
            raise ValueError(f"not an S3 location: {location.uri}")
        super().__init__(location)
        self.bucket = location.bucket
        self.prefix = location.path
        self.page_size = page_size
        self._client_obj = client

    @property
    def client(self) -> Any:
        """Created on first use, so opening a store (e.g. to render a job) needs no credentials."""
        if self._client_obj is None:
            try:
                self._client_obj = make_client()
            except Exception as exc:
                raise CheckpointError(
                    f"cannot use {self.uri}: {describe_error(exc, self.uri, None)}"
                ) from exc
        return self._client_obj

    def _fail(self, action: str, exc: Exception, client: Any = None) -> CheckpointError:
        endpoint = (client or self.client).meta.endpoint_url
        kind = StoreUnavailableError if is_transient(exc) else CheckpointError
        return kind(f"cannot {action} {self.uri}: {describe_error(exc, self.uri, endpoint)}")

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def check_access(self) -> None:
        """HeadBucket, then write and delete a probe object, with one attempt and short timeouts."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client = make_client(connect_timeout=3, read_timeout=10, max_attempts=1)
        except Exception as exc:
            raise CheckpointError(f"cannot use {self.uri}: {describe_error(exc, self.uri, None)}") from exc
        probe = self._key(f".access-check-{uuid.uuid4().hex}")
        try:
            client.head_bucket(Bucket=self.bucket)
            client.put_object(Bucket=self.bucket, Key=probe, Body=b"ok")
            client.delete_object(Bucket=self.bucket, Key=probe)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("access", exc, client) from exc

    def _read(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return bytes(response["Body"].read())
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND:
                return None
            raise self._fail(f"read {key} in", exc) from exc
        except BotoCoreError as exc:
            raise self._fail(f"read {key} in", exc) from exc

    def _write(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if len(data) > MULTIPART_THRESHOLD:
                from boto3.s3.transfer import TransferConfig

                config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD)
                self.client.upload_fileobj(io.BytesIO(data), self.bucket, self._key(key), Config=config)
            else:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(f"write {key} to", exc) from exc

    def _objects(self, rel_prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under `rel_prefix` (relative to the root), page by page."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = self._key(rel_prefix) if rel_prefix else (f"{self.prefix}/" if self.prefix else "")
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self.page_size}
        )
        try:
            for page in pages:
                yield from page.get("Contents", [])
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("list", exc) from exc

    def _scan(self) -> dict[str, Entry]:
        root = f"{self.prefix}/" if self.prefix else ""
        files: dict[str, dict[str, int]] = {}
        modified: dict[str, float] = {}
        for obj in self._objects(""):
            rel = obj["Key"][len(root) :]
            name, sep, file_name = rel.partition("/")
            if not sep or not file_name or name.startswith(".") or not name:
                continue  # `latest`, probes, or odd keys like "prefix//x"
            files.setdefault(name, {})[file_name] = int(obj["Size"])
            modified[name] = max(modified.get(name, 0.0), obj["LastModified"].timestamp())
        return {name: Entry(files=files[name], modified=modified[name]) for name in files}

    def _exists(self, name: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=self._key(f"{name}/"), MaxKeys=1
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("list", exc) from exc
        return bool(response.get("KeyCount", 0))

    def _delete(self, name: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        manifest = self._key(f"{name}/{MANIFEST_FILE}")
        try:
            self.client.delete_object(Bucket=self.bucket, Key=manifest)
            keys = [obj["Key"] for obj in self._objects(f"{name}/") if obj["Key"] != manifest]
            for start in range(0, len(keys), DELETE_BATCH):
                batch = [{"Key": k} for k in keys[start : start + DELETE_BATCH]]
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
                errors = response.get("Errors", [])
                if errors:
                    first = errors[0]
                    raise CheckpointError(
                        f"cannot delete {len(errors)} object(s) of {self._location.child(name).uri}: "
                        f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}"
                    )
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(f"delete {name} from", exc) from exc
