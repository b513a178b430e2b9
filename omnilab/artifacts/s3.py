"""An S3-compatible bucket as an artifact store (AWS S3, MinIO, Garage, Ceph...), through
boto3, imported only when such a store is used (``pip install 'omnilab[s3]'``).

Why boto3: it reads the configuration every AWS tool reads, unchanged (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL``, ``AWS_PROFILE`` and
``~/.aws/config``'s profiles, roles and SSO, instance and container credentials); it signs
presigned URLs; its transfer layer (s3transfer, what ``aws s3 cp`` itself uses) sends
many files and the parts of a large one over a pool of connections at once; and it is
AWS's own, released every week. ``AWS_REGION`` is honoured too (botocore reads only
``AWS_DEFAULT_REGION``), as the other AWS SDKs do.

Credentials are never shown: the store's error messages come from the server or from
botocore, and may quote the key id ("No such key: GK..."), so each goes through
:func:`omnilab.redact.redact_text` with the credentials in use, and through
:func:`omnilab.redact.redact_environment`.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal
from urllib.parse import quote

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from s3transfer.manager import TransferConfig, TransferManager
from s3transfer.subscribers import BaseSubscriber

from omnilab.artifacts.base import (
    CHUNK,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactStoreError,
    ChecksumMismatch,
    StoredFile,
    Wanted,
    file_sha256,
)
from omnilab.redact import redact_environment, redact_text

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

#: Requests in flight at once, across files and the parts of a large one. The AWS CLI
#: sends 10; an object store on a fast network keeps more busy.
CONCURRENCY = 16
#: Files above this go in parts of this size, sent (and fetched) in parallel.
PART_SIZE = 16 << 20
#: Keys a server answers with when there is no such object.
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


class _KnownSize(BaseSubscriber):
    """Tells s3transfer a download's size, as ``aws s3 cp`` does from its listing: no
    HEAD request before each file."""

    def __init__(self, size: int) -> None:
        self._size = size

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self._size)


class S3Store(ArtifactStore):
    def __init__(
        self, location: str, *, concurrency: int = CONCURRENCY, part_size: int = PART_SIZE
    ) -> None:
        bucket, _, prefix = location.partition("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.concurrency = concurrency
        self.part_size = part_size
        self._lock = threading.Lock()
        self._made: tuple[int, S3Client] | None = None
        self._secrets: list[str] = []

    # -- the client -------------------------------------------------------------------------

    def _client(self) -> S3Client:
        """One client per process (boto3's clients are thread-safe, not fork-safe), made
        on first use: a run pays for it at its end, not at its start."""
        with self._lock:
            if self._made is None or self._made[0] != os.getpid():
                core = botocore.session.get_session()
                session = boto3.session.Session(botocore_session=core)
                credentials = session.get_credentials()
                if credentials is not None:
                    frozen = credentials.get_frozen_credentials()
                    self._secrets = [
                        s for s in (frozen.access_key, frozen.secret_key, frozen.token) if s
                    ]
                client = session.client(
                    "s3",
                    region_name=os.environ.get("AWS_REGION") or None,
                    config=Config(
                        signature_version="s3v4",  # what every S3-compatible server takes
                        max_pool_connections=self.concurrency + 4,
                        request_checksum_calculation=_unless_set(
                            core, "request_checksum_calculation"
                        ),
                        response_checksum_validation=_unless_set(
                            core, "response_checksum_validation"
                        ),
                    ),
                )
                self._made = (os.getpid(), client)
            return self._made[1]

    def connect(self) -> None:
        try:
            self._client()
        except (BotoCoreError, ClientError, ValueError) as exc:
            raise self._failed("a client of", "", exc) from None

    def _manager(self, client: S3Client) -> TransferManager:
        return TransferManager(
            client,
            TransferConfig(
                multipart_threshold=self.part_size,
                multipart_chunksize=self.part_size,
                max_request_concurrency=self.concurrency,
                max_submission_concurrency=self.concurrency,
            ),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _reason(self, exc: BaseException) -> str:
        """One line on what went wrong, without any credential in it."""
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "?"), error.get("Message", "")
            text = f"{code}: {message}" if message else f"error {code}"
        elif isinstance(exc, NoCredentialsError):
            text = (
                "no AWS credentials found: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            )
        else:
            text = str(exc).strip() or type(exc).__name__
        line = text.splitlines()[0] if text else type(exc).__name__
        return redact_environment(redact_text(line, secrets=self._secrets))

    def _failed(self, what: str, key: str, exc: BaseException) -> ArtifactStoreError:
        return ArtifactStoreError(f"{what} {self.url}/{key} failed: {self._reason(exc)}")

    # -- writing ---------------------------------------------------------------------------

    def put(self, items: Sequence[tuple[str, Path]]) -> list[StoredFile]:
        if not items:
            return []
        try:
            client = self._client()
        except (BotoCoreError, ClientError, ValueError) as exc:
            raise self._failed("upload to", "", exc) from None
        with ThreadPoolExecutor(max_workers=2) as hashing, self._manager(client) as manager:
            futures = [
                manager.upload(str(path), self.bucket, self._key(key)) for key, path in items
            ]
            # Each file's sha256 is read while the uploads go on: the second read of
            # a file comes from the page cache, and hashlib runs outside the GIL.
            try:
                digests = list(hashing.map(file_sha256, [path for _, path in items]))
            except OSError as exc:
                raise ArtifactStoreError(f"cannot read {exc.filename}: {exc.strerror}") from None
            for (key, _), future in zip(items, futures, strict=True):
                try:
                    future.result()
                except Exception as exc:
                    raise self._failed("upload to", key, exc) from None
        return [
            StoredFile(key, size, sha256)
            for (key, _), (size, sha256) in zip(items, digests, strict=True)
        ]

    # -- reading ---------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        try:
            response = self._client().get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise ArtifactNotFound(f"no object {self.url}/{key}") from None
            raise self._failed("read of", key, exc) from None
        except (BotoCoreError, ValueError) as exc:
            raise self._failed("read of", key, exc) from None
        return io.BufferedReader(_Body(response["Body"], self, key), CHUNK_READ)

    def get(self, items: Sequence[Wanted]) -> None:
        if not items:
            return
        try:
            client = self._client()
        except (BotoCoreError, ClientError, ValueError) as exc:
            raise self._failed("download from", "", exc) from None
        large = [i for i in items if i.sha256 and i.size is not None and i.size > self.part_size]
        self._get_small(client, [i for i in items if i not in large])
        for item in large:
            self._get_large(client, item)

    def _get_small(self, client: S3Client, items: Sequence[Wanted]) -> None:
        """Many files at once through s3transfer, each checked once it is in. With the
        sizes recorded, s3transfer asks for no object's size: one request per file, not
        two."""
        if not items:
            return
        checks: list[Future[None]] = []
        with ThreadPoolExecutor(max_workers=2) as hashing, self._manager(client) as manager:
            futures = []
            for item in items:
                item.target.parent.mkdir(parents=True, exist_ok=True)
                subscribers = [_KnownSize(item.size)] if item.size is not None else None
                futures.append(
                    manager.download(
                        self.bucket, self._key(item.key), str(item.target), subscribers=subscribers
                    )
                )
            for item, future in zip(items, futures, strict=True):
                try:
                    future.result()
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") in _MISSING:
                        raise ArtifactNotFound(f"no object {self.url}/{item.key}") from None
                    raise self._failed("download of", item.key, exc) from None
                except Exception as exc:
                    raise self._failed("download of", item.key, exc) from None
                if item.sha256 is not None:
                    checks.append(hashing.submit(_check, item))
            for check in checks:
                check.result()

    def _get_large(self, client: S3Client, item: Wanted) -> None:
        """One large object as ranges fetched at once and written in place, hashed in
        order while the later ranges still arrive: its check costs no pass of its own
        once the download is over, as it would after s3transfer's."""
        size = item.size or 0
        key = self._key(item.key)
        ranges = [(at, min(self.part_size, size - at)) for at in range(0, size, self.part_size)]
        item.target.parent.mkdir(parents=True, exist_ok=True)
        partial = item.target.with_name(f".{item.target.name}.{os.getpid()}.partial")
        digest = hashlib.sha256()
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)

        def fetch(start: int, length: int) -> None:
            for attempt in range(_ATTEMPTS):
                try:
                    body = client.get_object(
                        Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
                    )["Body"]
                    at = start
                    for chunk in body.iter_chunks(CHUNK):
                        view = memoryview(chunk)
                        while view:
                            written = os.pwrite(fd, view, at)
                            view, at = view[written:], at + written
                    if at == start + length:
                        return
                    reason: BaseException = ValueError(f"{at - start} of {length} bytes")
                except BotoCoreError as exc:  # the connection broke: that range again
                    reason = exc
                if attempt == _ATTEMPTS - 1:
                    raise reason

        try:
            os.ftruncate(fd, size)
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                futures = [pool.submit(fetch, start, length) for start, length in ranges]
                try:
                    for (start, length), future in zip(ranges, futures, strict=True):
                        future.result()
                        end, at = start + length, start
                        while at < end:
                            data = os.pread(fd, min(CHUNK, end - at), at)
                            digest.update(data)
                            at += len(data)
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
        except ClientError as exc:
            partial.unlink(missing_ok=True)
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise ArtifactNotFound(f"no object {self.url}/{item.key}") from None
            raise self._failed("download of", item.key, exc) from None
        except (BotoCoreError, OSError, ValueError) as exc:
            partial.unlink(missing_ok=True)
            raise self._failed("download of", item.key, exc) from None
        finally:
            os.close(fd)
        found = digest.hexdigest()
        if found != item.sha256:
            partial.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"{item.key}: sha256 {found[:16]}... differs from the recorded "
                f"{(item.sha256 or '')[:16]}... (changed or damaged in the store)"
            )
        os.replace(partial, item.target)

    def delete_run(self, run_id: str) -> int:
        prefix = self._key(f"{run_id}/")
        count = 0
        try:
            client = self._client()
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                keys: list[ObjectIdentifierTypeDef] = [
                    {"Key": o["Key"]} for o in page.get("Contents", []) if "Key" in o
                ]
                if not keys:
                    continue
                answer = client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                )
                errors = answer.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise ArtifactStoreError(
                        f"removing {self.url}/{run_id}/ failed: {first.get('Code')}: "
                        f"{self._reason(ValueError(first.get('Message', '')))}"
                    )
                count += len(keys)
        except (BotoCoreError, ClientError, ValueError) as exc:
            raise self._failed("removing", f"{run_id}/", exc) from None
        return count

    def presigned_url(self, key: str, filename: str, expires_s: int) -> str | None:
        ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_")
        disposition = (
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
        )
        try:
            return self._client().generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self._key(key),
                    "ResponseContentDisposition": disposition,
                },
                ExpiresIn=expires_s,
            )
        except (BotoCoreError, ClientError, ValueError) as exc:
            raise self._failed("a link to", key, exc) from None


def _unless_set(core: botocore.session.Session, name: str) -> Literal["when_required"] | None:
    """botocore's per-request CRC32 checksums (its default since 1.36) off, unless the
    user's configuration says otherwise (``AWS_REQUEST_CHECKSUM_CALCULATION``,
    ``AWS_RESPONSE_CHECKSUM_VALIDATION``, or the profile's settings of the same names):
    every object omnilab stores is checked end to end by the sha256 recorded with the
    run, several S3-compatible servers refuse the trailing checksums botocore sends by
    default, and their CPU is what the sha256 needs."""
    try:
        profile = core.get_scoped_config()
    except BotoCoreError:
        profile = {}
    if os.environ.get(f"AWS_{name.upper()}") or name in profile:
        return None  # botocore reads the user's choice
    return "when_required"


#: Reads of an object's body go by pieces of this size.
CHUNK_READ = 1 << 16
#: Tries of one range of a large download whose connection broke.
_ATTEMPTS = 3


def _check(item: Wanted) -> None:
    _, found = file_sha256(item.target)
    if found != item.sha256:
        item.target.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"{item.key}: sha256 {found[:16]}... differs from the recorded "
            f"{(item.sha256 or '')[:16]}... (changed or damaged in the store)"
        )


class _Body(io.RawIOBase):
    """An object's body as a raw stream; a connection lost halfway is an
    :class:`ArtifactStoreError` like any other failure of the store."""

    def __init__(self, body: Any, store: S3Store, key: str) -> None:
        self._body = body
        self._store = store
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data: bytes = self._body.read(len(buffer))
        except (BotoCoreError, OSError) as exc:
            raise self._store._failed("read of", self._key, exc) from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            super().close()
