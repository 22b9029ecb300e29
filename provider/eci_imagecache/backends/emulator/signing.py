"""Request signatures, as Alibaba Cloud's OpenAPI gateway checks them: ACS3-HMAC-SHA256 and the
RPC signature v1 (HMAC-SHA1) that the Go SDK, the aliyun CLI, Terraform and older SDKs send.

ACS3: the canonical request is: method, path, the sorted and percent-encoded query, the signed
headers (lowercase name, trimmed value), their names, and the hex sha256 of the body (the value of
``x-acs-content-sha256``). The signature is the hex HMAC-SHA256, under the AccessKey secret, of
``ACS3-HMAC-SHA256\\n`` + hex sha256 of that canonical request.

RPC v1: every parameter (query and form body) travels as a parameter, the signature too. The
string to sign is ``METHOD&%2F&`` + the percent-encoded canonical query (all parameters but
``Signature``, sorted, each name and value percent-encoded as RFC 3986 says); the signature is
the base64 HMAC-SHA1 of it under ``secret + "&"``.

Each refusal carries the gateway's code (its list of common errors): ``Missing<Parameter>``,
``InvalidSignatureMethod``, ``IncompleteSignature``, ``InvalidAccessKeyId.NotFound``,
``InvalidTimeStamp.Format`` / ``.Expired``, ``SignatureDoesNotMatch``. Messages never hold a
parameter's value or the string to sign (it holds every parameter, passwords included).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

ALGORITHM = "ACS3-HMAC-SHA256"
# A signed request is good this long; its nonce is remembered at least as long (server side).
MAX_CLOCK_SKEW = timedelta(minutes=15)
_AUTHORIZATION = re.compile(
    rf"^{ALGORITHM} Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]+)$"
)


RPC_V1_METHOD = "HMAC-SHA1"
RPC_V1_VERSION = "1.0"
# The parameters every v1 request carries beside the action's own (``SignatureType``,
# ``SecurityToken`` and ``BearerToken`` only with some credentials).
RPC_V1_REQUIRED = (
    "AccessKeyId",
    "Action",
    "Signature",
    "SignatureMethod",
    "SignatureNonce",
    "SignatureVersion",
    "Timestamp",
    "Version",
)
RPC_V1_COMMON = frozenset(
    (*RPC_V1_REQUIRED, "Format", "SignatureType", "SecurityToken", "BearerToken")
)
_ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"


class SignatureError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class RpcV1Request:
    """What a verified v1 request says about itself; ``params`` are the action's own."""

    key_id: str
    action: str
    version: str
    nonce: str
    format: str
    params: list[tuple[str, str]]


def _fresh(sent_text: str, name: str) -> None:
    """A request's time must be ISO 8601 UTC and within the allowed skew of ours."""
    try:
        sent = datetime.strptime(sent_text, _ISO_UTC).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError(
            "InvalidTimeStamp.Format", f"{name} is not an ISO 8601 UTC time (YYYY-MM-DDThh:mm:ssZ)"
        ) from None
    if abs(datetime.now(UTC) - sent) > MAX_CLOCK_SKEW:
        raise SignatureError(
            "InvalidTimeStamp.Expired", f"{name} is more than 15 minutes from the server's time"
        )


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
    _fresh(headers.get("x-acs-date", ""), "x-acs-date")
    payload_hash = headers.get("x-acs-content-sha256", "")
    if hashlib.sha256(body).hexdigest() != payload_hash:
        raise SignatureError("IncompleteSignature", "x-acs-content-sha256 does not match the body")
    expected = sign(secret, string_to_sign(method, path, query, headers, signed, payload_hash))
    if not hmac.compare_digest(expected, signature):
        raise SignatureError(
            "SignatureDoesNotMatch", "the request signature does not match the AccessKey secret"
        )
    return key_id


# RPC signature v1 -----------------------------------------------------------------------------


def percent_encode(text: str) -> str:
    """RFC 3986: everything but letters, digits and ``-_.~`` as UTF-8 ``%XX``."""
    return quote(text, safe="~", encoding="utf-8")


def rpc_string_to_sign(method: str, params: list[tuple[str, str]]) -> str:
    canonical = "&".join(
        f"{percent_encode(k)}={percent_encode(v)}"
        for k, v in sorted(params, key=lambda kv: kv[0])
        if k != "Signature"
    )
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"


def rpc_sign(secret: str, text: str) -> str:
    digest = hmac.new(f"{secret}&".encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_rpc_v1(
    method: str, params: list[tuple[str, str]], secrets: Mapping[str, str]
) -> RpcV1Request:
    """Check a v1 request (its query and form parameters together); raises
    :class:`SignatureError` with the gateway's code, else returns what the request says."""
    values: dict[str, str] = {}
    for name, value in params:
        if name in values:  # the canonical query would be ambiguous
            raise SignatureError("IncompleteSignature", f"the parameter {name} is given twice")
        values[name] = value
    for name in RPC_V1_REQUIRED:
        if not values.get(name):
            raise SignatureError(f"Missing{name}", f"the parameter {name} is required")
    if values["SignatureMethod"] != RPC_V1_METHOD:
        raise SignatureError(
            "InvalidSignatureMethod", f"only {RPC_V1_METHOD} signatures (or {ALGORITHM}) are served"
        )
    if values["SignatureVersion"] != RPC_V1_VERSION:
        raise SignatureError("IncompleteSignature", f"SignatureVersion must be {RPC_V1_VERSION}")
    secret = secrets.get(values["AccessKeyId"])
    if secret is None:
        raise SignatureError("InvalidAccessKeyId.NotFound", "the AccessKey id is not known")
    _fresh(values["Timestamp"], "Timestamp")
    expected = rpc_sign(secret, rpc_string_to_sign(method, params))
    if not hmac.compare_digest(expected.encode(), values["Signature"].encode()):
        raise SignatureError(
            "SignatureDoesNotMatch", "the request signature does not match the AccessKey secret"
        )
    return RpcV1Request(
        key_id=values["AccessKeyId"],
        action=values["Action"],
        version=values["Version"],
        nonce=values["SignatureNonce"],
        format=values.get("Format") or "JSON",
        params=[(k, v) for k, v in params if k not in RPC_V1_COMMON],
    )
