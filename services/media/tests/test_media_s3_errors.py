"""S3 errors are classified from the SDK's error codes and HTTP status, never the text (M-2)."""

from __future__ import annotations

import pytest
from botocore.exceptions import (  # type: ignore[import-untyped]
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from marquee_media.storage import (
    ObjectChanged,
    ObjectNotFound,
    StorageDenied,
    StorageError,
    StorageUnavailable,
)
from marquee_media.storage.s3 import classify


def client_error(code: str, status: int, message: str = "") -> ClientError:
    response = {"Error": {"Code": code, "Message": message},
                "ResponseMetadata": {"HTTPStatusCode": status}}  # fmt: skip
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (client_error("NoSuchKey", 404), ObjectNotFound),
        (client_error("404", 404), ObjectNotFound),  # HEAD: no body, the status is the code
        (client_error("NoSuchUpload", 404), ObjectNotFound),
        (client_error("AccessDenied", 403), StorageDenied),
        (client_error("SignatureDoesNotMatch", 403), StorageDenied),
        (client_error("InvalidAccessKeyId", 403), StorageDenied),
        (client_error("PreconditionFailed", 412), ObjectChanged),
        (client_error("InternalError", 500), StorageUnavailable),
        (client_error("SlowDown", 503), StorageUnavailable),
        # The text says "not found", the code does not: the code decides.
        (client_error("InternalError", 500, "The specified key was not found"), StorageUnavailable),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), StorageUnavailable),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"), StorageUnavailable),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), StorageUnavailable),
        (TimeoutError(), StorageUnavailable),
    ],
)
def test_sdk_errors_are_classified_by_code(error: Exception, kind: type[StorageError]) -> None:
    assert type(classify(error)) is kind
