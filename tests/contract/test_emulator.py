"""The emulator's gate: signatures, replays, and no secret in its logs or answers."""

import hashlib
import json
import logging
import secrets
import socket
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
import pytest

from eci_imagecache.backends.alicloud import AliCloudBackend
from eci_imagecache.backends.base import BackendError
from eci_imagecache.backends.emulator.params import unflatten
from eci_imagecache.backends.emulator.server import Connections, EmulatorServer, Limits
from eci_imagecache.backends.emulator.signing import sign, string_to_sign
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ImageCacheSpec
from eci_imagecache.retry import RetryPolicy

from ..conftest import REGISTRY_USER, Registry
from .conftest import ACCESS_KEY, REGION, credential


@pytest.fixture
def emulator(tmp_path):
    with EmulatorServer(
        LocalBackend(data_dir=tmp_path / "data", region=REGION), dict([ACCESS_KEY])
    ) as server:
        yield server


def client(server: EmulatorServer, key_id: str, secret: str) -> AliCloudBackend:
    return AliCloudBackend(
        region=REGION,
        endpoint=server.endpoint,
        credential=credential(key_id, secret),
        poll_interval=0.02,
        timeout=30,
    )


def signed_request(
    server: EmulatorServer,
    action: str,
    params: dict[str, str],
    key_id: str,
    secret: str,
    date: str | None = None,
) -> httpx.Request:
    """A request signed by hand, the way the SDK signs it."""
    query = sorted(params.items())
    host = server.endpoint.removeprefix("http://")
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": "2018-08-08",
        "x-acs-date": date or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": secrets.token_hex(16),
        "x-acs-content-sha256": hashlib.sha256(b"").hexdigest(),
    }
    signed = sorted(headers)
    text = string_to_sign("POST", "/", query, headers, signed, headers["x-acs-content-sha256"])
    headers["Authorization"] = (
        f"ACS3-HMAC-SHA256 Credential={key_id},"
        f"SignedHeaders={';'.join(signed)},Signature={sign(secret, text)}"
    )
    return httpx.Request("POST", f"{server.endpoint}/?{urlencode(query)}", headers=headers)


def test_the_sdk_with_a_wrong_secret_is_refused(emulator: EmulatorServer) -> None:
    with pytest.raises(BackendError, match="SignatureDoesNotMatch") as info:
        client(emulator, ACCESS_KEY[0], "not-the-secret").list_image_caches()
    assert "check ALIBABA_CLOUD_ACCESS_KEY_SECRET" in str(info.value)


def test_an_unknown_access_key_is_refused(emulator: EmulatorServer) -> None:
    with pytest.raises(BackendError, match=r"InvalidAccessKeyId\.NotFound"):
        client(emulator, "LTAI-nobody", ACCESS_KEY[1]).usage()


def test_unsigned_and_tampered_requests_are_refused(emulator: EmulatorServer) -> None:
    unsigned = httpx.post(
        f"{emulator.endpoint}/?RegionId={REGION}",
        headers={"x-acs-action": "ListUsage", "x-acs-version": "2018-08-08"},
    )
    assert unsigned.status_code == 400 and unsigned.json()["Code"] == "MissingAuthorization"
    good = signed_request(emulator, "ListUsage", {"RegionId": REGION}, *ACCESS_KEY)
    tampered = httpx.Request(
        "POST", str(good.url).replace(REGION, "cn-beijing"), headers=good.headers
    )
    with httpx.Client() as http:
        answer = http.send(tampered)
        assert answer.json()["Code"] == "SignatureDoesNotMatch"
        assert http.send(good).status_code == 200
        replay = http.send(good)
    assert replay.status_code == 400 and replay.json()["Code"] == "SignatureNonceUsed"


def test_nonce_and_date_must_be_signed_and_fresh(emulator: EmulatorServer) -> None:
    good = signed_request(emulator, "ListUsage", {"RegionId": REGION}, *ACCESS_KEY)
    # The nonce is covered by the signature: a new nonce on a captured request breaks it.
    renonced = httpx.Request(
        "POST", str(good.url), headers={**good.headers, "x-acs-signature-nonce": "another-nonce"}
    )
    stale = signed_request(
        emulator, "ListUsage", {"RegionId": REGION}, *ACCESS_KEY, date="2026-01-01T00:00:00Z"
    )
    with httpx.Client() as http:
        assert http.send(renonced).json()["Code"] == "SignatureDoesNotMatch"
        assert http.send(stale).json()["Code"] == "InvalidTimeStamp.Expired"


def test_no_password_in_logs_or_answers(emulator, private_registry: Registry, caplog) -> None:
    user, password = REGISTRY_USER
    backend = client(emulator, *ACCESS_KEY)
    caplog.set_level(logging.DEBUG)
    made = backend.create_image_cache(
        ImageCacheSpec(
            name="private",
            images=[private_registry.ref("demo/web:1.0")],
            credentials=[{"server": private_registry.host, "username": user, "password": password}],
        )
    )
    assert made.status.value == "Ready"
    wrong = {"server": private_registry.host, "username": user, "password": "wrong-Pa55"}
    with pytest.raises(BackendError) as info:
        backend.create_image_cache(
            ImageCacheSpec(
                name="wrong", images=[private_registry.ref("demo/web:1.0")], credentials=[wrong]
            )
        )
    assert "wrong-Pa55" not in str(info.value)
    assert password not in caplog.text and "wrong-Pa55" not in caplog.text
    assert "CreateImageCache 200" in caplog.text  # what is logged: action and status


def test_parameters_unflatten_like_the_sdk_flattens() -> None:
    flat = [
        ("Image.1", "a"),
        ("Image.2", "b"),
        ("Container.1.Name", "web"),
        ("Container.1.Port.1.Port", "80"),
        ("Container.2.Name", "side"),
        ("RegionId", "r"),
    ]
    assert unflatten(flat) == {
        "Image": ["a", "b"],
        "RegionId": "r",
        "Container": [{"Name": "web", "Port": [{"Port": "80"}]}, {"Name": "side"}],
    }


def test_unreachable_api_error_holds_no_password(private_registry: Registry) -> None:
    user, password = REGISTRY_USER
    unreachable = AliCloudBackend(
        region=REGION,
        endpoint="http://127.0.0.1:9",
        credential=credential(*ACCESS_KEY),
        retry=RetryPolicy.immediate(attempts=2),
    )
    with pytest.raises(BackendError) as info:
        unreachable.create_image_cache(
            ImageCacheSpec(
                name="private",
                images=[private_registry.ref("demo/web:1.0")],
                credentials=[
                    {"server": private_registry.host, "username": user, "password": password}
                ],
            )
        )
    assert "could not be reached" in str(info.value)
    assert password not in str(info.value) and password not in repr(info.value.__cause__)


def test_describe_pages_with_next_token(emulator: EmulatorServer, registry: Registry) -> None:
    from alibabacloud_eci20180808 import models as sdk

    backend = emulator.actions.backend
    made = {
        backend.create_image_cache(
            ImageCacheSpec(name=f"page-{i}", images=[registry.ref("demo/web:1.0")])
        ).id
        for i in range(3)
    }
    seen, token = [], None
    while True:
        answer = emulator.actions.call(
            "DescribeImageCaches",
            sdk.DescribeImageCachesRequest(region_id=REGION, limit=2, next_token=token),
        )
        assert answer.total_count == 3 and len(answer.image_caches) <= 2
        seen += [c.image_cache_id for c in answer.image_caches]
        token = answer.next_token
        if not token:
            break
    assert sorted(seen) == sorted(made)


def test_a_replay_after_a_restart_is_refused(tmp_path) -> None:
    data = tmp_path / "data"
    with EmulatorServer(LocalBackend(data_dir=data, region=REGION), dict([ACCESS_KEY])) as first:
        captured = signed_request(first, "ListUsage", {"RegionId": REGION}, *ACCESS_KEY)
        with httpx.Client() as http:
            assert http.send(captured).status_code == 200
        port = first.httpd.server_address[1]
    # The same data directory and port: the captured request is valid in every other way.
    with EmulatorServer(
        LocalBackend(data_dir=data, region=REGION), dict([ACCESS_KEY]), port=port
    ) as second:
        assert second.endpoint == first.endpoint
        with httpx.Client() as http:
            replay = http.send(captured)
    assert replay.status_code == 400 and replay.json()["Code"] == "SignatureNonceUsed"


def raw_exchange(server: EmulatorServer, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    host, port = server.httpd.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head + b"\r\n\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.partition(b"\r\n\r\n")[2] or b"{}")


def test_bodies_are_bounded_before_anything_reads_them(emulator: EmulatorServer) -> None:
    status, payload = raw_exchange(
        emulator,
        b"POST / HTTP/1.1\r\nHost: x\r\nx-acs-action: ListUsage\r\nContent-Length: 50000000000",
    )
    assert status == 413 and payload["Code"] == "InvalidParameter.ContentLength"
    status, _ = raw_exchange(
        emulator, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152", b"x" * 65536
    )
    assert status == 413
    status, payload = raw_exchange(emulator, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1")
    assert status == 400 and payload["Code"] == "InvalidParameter.Content-Length"


def test_an_idle_connection_is_closed(tmp_path) -> None:
    with EmulatorServer(
        LocalBackend(data_dir=tmp_path / "data", region=REGION),
        dict([ACCESS_KEY]),
        connection_timeout=0.5,
    ) as server:
        host, port = server.httpd.server_address[:2]
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\n")  # and then nothing
            assert sock.recv(1024) == b""  # closed by the server, not by our timeout


@pytest.mark.parametrize(
    ("action", "params", "code"),
    [
        (
            "CreateContainerGroup",
            {
                "ContainerGroupName": "web",
                "Container.1.Name": "web",
                "Container.1.Image": "nginx",
                "Container.1.Port.1.Port": "abc-Pa55word",
            },
            "InvalidParameter.Container.Port.Port",
        ),
        (
            "CreateContainerGroup",
            {
                "ContainerGroupName": "web",
                "Container.1.Name": "web",
                "Container.1.Image": "nginx",
                "Cpu": "lots-Pa55word",
            },
            "InvalidParameter.Cpu",
        ),
        (
            "CreateContainerGroup",
            {"ContainerGroupName": "web", "Container.1": "web-Pa55word"},
            "InvalidParameter.Container",
        ),
        ("CreateContainerGroup", {"ContainerGroupName": "web"}, "MissingParameter.Container"),
        (
            "DescribeContainerGroups",
            {"ContainerGroupIds": "1-Pa55word"},
            "InvalidParameter.ContainerGroupIds",
        ),
        ("DescribeContainerGroups", {"Limit": "-1"}, "InvalidParameter.Limit"),
        ("DescribeContainerGroups", {"Limit": "100"}, "InvalidParameter.Limit"),
        ("DescribeImageCaches", {"NextToken": "zz-Pa55word"}, "InvalidParameter.NextToken"),
        ("DescribeImageCaches", {"Bogus": "x-Pa55word"}, "InvalidParameter.Bogus"),
        (
            "CreateImageCache",
            {"ImageCacheName": "web", "Image.1": "nginx", "EliminationStrategy": "x-Pa55word"},
            "InvalidParameter.EliminationStrategy",
        ),
        ("DeleteImageCache", {}, "MissingParameter.ImageCacheId"),
    ],
)
def test_malformed_parameters_are_400_with_the_api_code_and_never_logged(
    emulator: EmulatorServer, action: str, params: dict, code: str, caplog, capfd
) -> None:
    caplog.set_level(logging.DEBUG)
    request = signed_request(emulator, action, {"RegionId": REGION, **params}, *ACCESS_KEY)
    with httpx.Client() as http:
        answer = http.send(request)
    assert (answer.status_code, answer.json()["Code"]) == (400, code)
    out, err = capfd.readouterr()
    # What the emulator logged (the test's own HTTP client logs its URL: not ours to judge).
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("eci_imagecache"))
    assert f"{action} 400" in ours
    for text in (answer.text, ours, out, err):
        assert "Pa55word" not in text


def v1_request(
    server: EmulatorServer,
    action: str,
    params: dict[str, str],
    key_id: str,
    secret: str,
    method: str = "GET",
    timestamp: str | None = None,
    nonce: str | None = None,
    form: bool = False,
    **common: str,
) -> httpx.Request:
    """A request signed v1 by the Python SDK's own RPC signer (not ours): parameters in the
    query (GET), or in a form body (POST with ``form``)."""
    from alibabacloud_tea_openapi.utils import Utils

    signed = {
        "Action": action,
        "Version": "2018-08-08",
        "Format": "JSON",
        "Timestamp": timestamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "SignatureNonce": secrets.token_hex(16) if nonce is None else nonce,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "AccessKeyId": key_id,
        **common,
        **params,
    }
    signed["Signature"] = Utils.get_rpcsignature(signed, method, secret)
    if form:
        common_names = {k: v for k, v in signed.items() if k not in params}
        return httpx.Request(
            method,
            f"{server.endpoint}/?{urlencode(common_names)}",
            content=urlencode(params).encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    return httpx.Request(method, f"{server.endpoint}/?{urlencode(signed)}")


class V1Client:
    """The official SDK client, made to sign the older way (``signature_algorithm="v2"`` selects
    its RPC signature v1: HMAC-SHA1 parameters in the query)."""

    def __new__(cls, config: object) -> object:
        from alibabacloud_eci20180808.client import Client

        config.signature_algorithm = "v2"  # type: ignore[attr-defined]
        return Client(config)


def test_the_sdk_signing_v1_runs_a_session(emulator: EmulatorServer, registry: Registry) -> None:
    backend = AliCloudBackend(
        region=REGION,
        endpoint=emulator.endpoint,
        credential=credential(*ACCESS_KEY),
        poll_interval=0.02,
        timeout=30,
        client_class=V1Client,  # type: ignore[arg-type]
    )
    made = backend.create_image_cache(
        ImageCacheSpec(name="v1", images=[registry.ref("demo/web:1.0")], tags={"team": "a b"})
    )
    assert made.status.value == "Ready"
    assert [c.id for c in backend.list_image_caches()] == [made.id]
    assert backend.usage().manual == 1
    backend.delete_image_cache(made.id)
    assert backend.list_image_caches() == []


def test_v1_parameters_come_from_the_query_or_a_form_body(
    emulator: EmulatorServer, registry: Registry
) -> None:
    create = {
        "RegionId": REGION,
        "ImageCacheName": "form-made",
        "Image.1": registry.ref("demo/web:1.0"),
        "Tag.1.Key": "team",
        "Tag.1.Value": "a&b=c d",
    }
    with httpx.Client() as http:
        made = http.send(
            v1_request(emulator, "CreateImageCache", create, *ACCESS_KEY, "POST", form=True)
        )
        assert made.status_code == 200, made.text
        cache_id = made.json()["ImageCacheId"]
        query = {"RegionId": REGION, "ImageCacheId": cache_id}
        seen = http.send(v1_request(emulator, "DescribeImageCaches", query, *ACCESS_KEY))
        posted = http.send(v1_request(emulator, "DescribeImageCaches", query, *ACCESS_KEY, "POST"))
    for answer in (seen, posted):
        (cache,) = answer.json()["ImageCaches"]
        assert cache["ImageCacheName"] == "form-made"
        assert cache["Tags"] == [{"Key": "team", "Value": "a&b=c d"}]


def test_v1_asks_for_xml_and_gets_the_gateways_xml(emulator: EmulatorServer) -> None:
    from xml.etree import ElementTree

    with httpx.Client() as http:
        answer = http.send(
            v1_request(emulator, "ListUsage", {"RegionId": REGION}, *ACCESS_KEY, Format="XML")
        )
        refused = http.send(
            v1_request(
                emulator, "ListUsage", {"RegionId": REGION}, ACCESS_KEY[0], "x", Format="XML"
            )
        )
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/xml")
    root = ElementTree.fromstring(answer.content)
    assert root.tag == "ListUsageResponse" and root.findtext("RequestId")
    assert int(root.findtext("Attributes/MaxImageCacheCount") or 0) > 0
    error = ElementTree.fromstring(refused.content)
    assert (refused.status_code, error.tag, error.findtext("Code")) == (
        400,
        "Error",
        "SignatureDoesNotMatch",
    )


@pytest.mark.parametrize(
    ("how", "status", "code"),
    [
        ({"secret": "not-the-secret"}, 400, "SignatureDoesNotMatch"),
        ({"key_id": "LTAI-nobody"}, 404, "InvalidAccessKeyId.NotFound"),
        ({"timestamp": "OLD"}, 400, "InvalidTimeStamp.Expired"),
        ({"timestamp": "2026-12-06 10:00:00"}, 400, "InvalidTimeStamp.Format"),
        ({"SignatureMethod": "HMAC-MD5"}, 400, "InvalidSignatureMethod"),
        ({"SignatureVersion": "2.0"}, 400, "IncompleteSignature"),
        ({"nonce": ""}, 400, "MissingSignatureNonce"),
        ({"Version": "2020-01-01"}, 400, "InvalidVersion"),
        ({"Action": "RunInstances"}, 404, "InvalidAction.NotFound"),
        ({"Format": "YAML"}, 400, "InvalidParameter.Format"),
    ],
)
def test_v1_refusals_carry_the_gateways_code_and_change_nothing(
    emulator: EmulatorServer, registry: Registry, how: dict, status: int, code: str, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    key_id, secret = how.pop("key_id", ACCESS_KEY[0]), how.pop("secret", ACCESS_KEY[1])
    if how.get("timestamp") == "OLD":
        how["timestamp"] = (datetime.now(UTC) - timedelta(minutes=20)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    action = how.pop("Action", "CreateImageCache")
    create = {
        "RegionId": REGION,
        "ImageCacheName": "refused",
        "Image.1": registry.ref("demo/web:1.0"),
        "ImageRegistryCredential.1.Server": registry.host,
        "ImageRegistryCredential.1.UserName": "someone",
        "ImageRegistryCredential.1.Password": "reg-Pa55word",
    }
    request = v1_request(emulator, action, create, key_id, secret, **how)
    with httpx.Client() as http:
        answer = http.send(request)
    assert (answer.status_code, answer.json()["Code"]) == (status, code)
    assert emulator.actions.backend.list_image_caches() == []
    # Neither the secret, nor a parameter's value, nor the signature is echoed or logged.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("eci_imagecache"))
    signature = dict(httpx.QueryParams(request.url.query))["Signature"]
    for text in (answer.text, ours):
        for value in (secret, "reg-Pa55word", signature):
            assert value not in text


def test_a_replayed_v1_request_is_refused_and_changes_nothing(
    emulator: EmulatorServer, registry: Registry
) -> None:
    create = {"RegionId": REGION, "ImageCacheName": "once", "Image.1": registry.ref("demo/web:1.0")}
    request = v1_request(emulator, "CreateImageCache", create, *ACCESS_KEY, "POST")
    with httpx.Client() as http:
        assert http.send(request).status_code == 200
        replay = http.send(request)
    assert (replay.status_code, replay.json()["Code"]) == (400, "SignatureNonceUsed")
    assert len(emulator.actions.backend.list_image_caches()) == 1


def test_acs3_reads_parameters_from_a_form_body_too(emulator: EmulatorServer) -> None:
    body = urlencode({"RegionId": REGION}).encode()
    host = emulator.endpoint.removeprefix("http://")
    headers = {
        "host": host,
        "x-acs-action": "ListUsage",
        "x-acs-version": "2018-08-08",
        "x-acs-date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": secrets.token_hex(16),
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "content-type": "application/x-www-form-urlencoded",
    }
    signed = sorted(headers)
    text = string_to_sign("POST", "/", [], headers, signed, headers["x-acs-content-sha256"])
    headers["Authorization"] = (
        f"ACS3-HMAC-SHA256 Credential={ACCESS_KEY[0]},"
        f"SignedHeaders={';'.join(signed)},Signature={sign(ACCESS_KEY[1], text)}"
    )
    answer = httpx.post(f"{emulator.endpoint}/", content=body, headers=headers)
    assert answer.status_code == 200 and int(answer.json()["Attributes"]["MaxImageCacheCount"]) > 0
    # The form is covered by the body's hash: another body breaks the signature.
    headers["x-acs-signature-nonce"] = secrets.token_hex(16)
    other = httpx.post(f"{emulator.endpoint}/", content=b"RegionId=cn-beijing", headers=headers)
    assert other.json()["Code"] in ("IncompleteSignature", "SignatureDoesNotMatch")


def test_idle_connections_give_way_to_a_new_client(tmp_path) -> None:
    with EmulatorServer(
        LocalBackend(data_dir=tmp_path / "data", region=REGION),
        dict([ACCESS_KEY]),
        limits=Limits(max_connections=2),
    ) as server:
        host, port = server.httpd.server_address[:2]
        idle = [socket.create_connection((host, port), timeout=10) for _ in range(2)]
        try:
            time.sleep(0.2)  # both accepted and waiting for a request line
            good = signed_request(server, "ListUsage", {"RegionId": REGION}, *ACCESS_KEY)
            with httpx.Client() as http:
                answer = http.send(good)
            assert answer.status_code == 200
            # The oldest idle connection was closed to make room (the server's doing: EOF).
            assert idle[0].recv(1024) == b""
        finally:
            for sock in idle:
                sock.close()


def test_the_connection_that_gives_way_is_the_first_accepted_whatever_thread_ran_first() -> None:
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        connections = Connections(2)
        first, second, new = (server for server, _ in pairs)
        assert connections.admit(first) and connections.admit(second)
        connections.idle(second)  # the second's thread reached its request line first
        connections.idle(first)
        assert connections.admit(new)
        pairs[0][1].settimeout(1)
        assert pairs[0][1].recv(1) == b""  # the first accepted was closed
        pairs[1][1].setblocking(False)
        with pytest.raises(BlockingIOError):  # the second is still open, nothing to read
            pairs[1][1].recv(1)
    finally:
        for pair in pairs:
            for sock in pair:
                sock.close()


def test_past_its_turns_a_request_is_throttled_as_the_sdk_expects(tmp_path) -> None:
    """Busy past ``queue_wait``: 400 ``Throttling.User`` with ``x-acs-retry-after``, which the
    SDK itself raises as its retryable ``ThrottlingException`` (not a dropped connection)."""
    import threading

    from alibabacloud_eci20180808 import models as sdk
    from alibabacloud_eci20180808.client import Client
    from alibabacloud_tea_openapi import models as openapi
    from alibabacloud_tea_openapi.exceptions import ThrottlingException

    with EmulatorServer(
        LocalBackend(data_dir=tmp_path / "data", region=REGION),
        dict([ACCESS_KEY]),
        limits=Limits(max_requests=1, queue_wait=0.2, retry_after_ms=50),
    ) as server:
        release, entered = threading.Event(), threading.Event()
        call = server.actions.call

        def slow(action: str, request: object) -> object:
            entered.set()
            release.wait(10)
            return call(action, request)

        server.actions.call = slow  # type: ignore[method-assign]
        host = server.endpoint.removeprefix("http://")
        config = openapi.Config(
            credential=credential(*ACCESS_KEY), endpoint=host, protocol="http", region_id=REGION
        )
        holder = threading.Thread(
            target=lambda: Client(config).list_usage(sdk.ListUsageRequest(region_id=REGION))
        )
        holder.start()
        try:
            assert entered.wait(10)
            with pytest.raises(ThrottlingException) as info:
                Client(config).list_usage(sdk.ListUsageRequest(region_id=REGION))
            assert (info.value.status_code, info.value.code) == (400, "Throttling.User")
            assert info.value.retry_after == 50
        finally:
            release.set()
            holder.join(10)


def test_v1_parameters_may_all_travel_in_the_form_body(emulator: EmulatorServer) -> None:
    from alibabacloud_tea_openapi.utils import Utils

    signed = {
        "Action": "ListUsage",
        "Version": "2018-08-08",
        "Format": "JSON",
        "RegionId": REGION,
        "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "SignatureNonce": secrets.token_hex(16),
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "AccessKeyId": ACCESS_KEY[0],
    }
    signed["Signature"] = Utils.get_rpcsignature(signed, "POST", ACCESS_KEY[1])
    answer = httpx.post(
        f"{emulator.endpoint}/",
        content=urlencode(signed).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200, answer.text
    assert int(answer.json()["Attributes"]["MaxImageCacheCount"]) > 0


def test_a_burst_of_clients_is_answered_or_throttled_never_dropped(tmp_path) -> None:
    """100 clients connect at once and only then send, while answers are slow: every one gets
    an answer (200, or Throttling.User to retry after the time it names), none a closed
    connection; retried, all succeed."""
    import threading

    clients = 100
    with EmulatorServer(
        LocalBackend(data_dir=tmp_path / "data", region=REGION),
        dict([ACCESS_KEY]),
        limits=Limits(max_requests=4, queue_wait=0.3),
    ) as server:
        call = server.actions.call

        def slow(action: str, request: object) -> object:
            time.sleep(0.01)  # answers take a while: requests queue for a turn
            return call(action, request)

        server.actions.call = slow  # type: ignore[method-assign]
        host, port = server.httpd.server_address[:2]
        outcomes: list[str] = []
        connected = threading.Barrier(clients, timeout=30)

        def one_client() -> None:
            sock = socket.create_connection((host, port), timeout=30)
            connected.wait()  # every connection open before any request
            while True:
                request = signed_request(server, "ListUsage", {"RegionId": REGION}, *ACCESS_KEY)
                head = [f"POST {request.url.raw_path.decode()} HTTP/1.1"]
                head += [f"{k}: {v}" for k, v in request.headers.items()]
                head += ["Content-Length: 0", "Connection: close"]
                try:
                    status, payload = exchange(sock, "\r\n".join(head).encode())
                except OSError as err:
                    outcomes.append(type(err).__name__)
                    return
                finally:
                    sock.close()
                code = payload.get("Code", str(status))
                outcomes.append(code)
                if code != "Throttling.User":
                    return
                time.sleep(0.05)
                sock = socket.create_connection((host, port), timeout=30)

        threads = [threading.Thread(target=one_client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert set(outcomes) <= {"200", "Throttling.User"}, set(outcomes)
    assert outcomes.count("200") == clients


def exchange(sock: socket.socket, head: bytes) -> tuple[int, dict]:
    """Send a request head on an open connection; the status and JSON body of its answer."""
    sock.sendall(head + b"\r\n\r\n")
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    if not answer:
        raise ConnectionResetError("closed without an answer")
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.partition(b"\r\n\r\n")[2] or b"{}")
