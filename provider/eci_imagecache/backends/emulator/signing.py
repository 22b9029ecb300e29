"""ACS3-HMAC-SHA256 request signatures, as Alibaba Cloud's OpenAPI gateway checks them.

The canonical request is: method, path, the sorted and percent-encoded query, the signed headers
(lowercase name, trimmed value), their names, and the hex sha256 of the body (the value of
``x-acs-content-sha256``). The signature is the hex HMAC-SHA256, under the AccessKey secret, of
``ACS3-HMAC-SHA256\\n`` + hex sha256 of that canonical request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

ALGORITHM = "ACS3-HMAC-SHA256"
# A signed request is good this long; its nonce is remembered at least as long (server side).
MAX_CLOCK_SKEW = timedelta(minutes=15)
_AUTHORIZATION = re.compile(
    rf"^{ALGORITHM} Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]+)$"
)


class SignatureError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def canonical_query(query: list[tuple[str, str]]) -> str:
    pairs = sorted(query, key=lambda kv: kv[0])
    return "&".join(f"{k}={quote(v, safe='~', encoding='utf-8')}" for k, v in pairs)


def string_to_sign(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    signed: list[str],
    payload_hash: str,
) -> str:
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed)
    canonical = "\n".join(
        [
            method,
            path or "/",
            canonical_query(query),
            canonical_headers,
            ";".join(signed),
            payload_hash,
        ]
    )
    return f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def sign(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def verify(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    secrets: Mapping[str, str],
) -> str:
    """Check a request's signature; returns the AccessKey id or raises :class:`SignatureError`."""
    headers = {k.lower(): v for k, v in headers.items()}
    authorization = headers.get("authorization", "")
    match = _AUTHORIZATION.match(authorization.strip())
    if match is None:
        raise SignatureError(
            "MissingAuthorization" if not authorization else "IncompleteSignature",
            f"the request is not signed with {ALGORITHM}",
        )
    key_id, signed_headers, signature = match.groups()
    secret = secrets.get(key_id)
    if secret is None:
        raise SignatureError("InvalidAccessKeyId.NotFound", "the AccessKey id is not known")
    signed = signed_headers.split(";")
    required_headers = (
        "host",
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
    )
    for required in required_headers:
        if required not in signed:
            raise SignatureError("IncompleteSignature", f"header {required} must be signed")
    try:
        sent = datetime.strptime(headers.get("x-acs-date", ""), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise SignatureError(
            "InvalidTimeStamp.Format", "x-acs-date is not an ISO 8601 UTC time"
        ) from None
    if abs(datetime.now(UTC) - sent.replace(tzinfo=UTC)) > MAX_CLOCK_SKEW:
        raise SignatureError(
            "InvalidTimeStamp.Expired", "x-acs-date is more than 15 minutes from the server's time"
        )
    payload_hash = headers.get("x-acs-content-sha256", "")
    if hashlib.sha256(body).hexdigest() != payload_hash:
        raise SignatureError("IncompleteSignature", "x-acs-content-sha256 does not match the body")
    expected = sign(secret, string_to_sign(method, path, query, headers, signed, payload_hash))
    if not hmac.compare_digest(expected, signature):
        raise SignatureError(
            "SignatureDoesNotMatch", "the request signature does not match the AccessKey secret"
        )
    return key_id
