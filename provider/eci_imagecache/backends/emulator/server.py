"""An HTTP server answering the official ECI SDK's RPC-style requests from the local backend.

Requests are ``POST /?<flattened parameters>`` with ``x-acs-action``/``x-acs-version`` headers and
an ACS3-HMAC-SHA256 ``Authorization``; unsigned or wrongly signed requests are refused with the
gateway's error codes. Passwords travel in the query string, so request URLs and parameters are
never logged or echoed: logs name the action and the status only.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pydantic import ValidationError

from ...engine.matcher import score
from ...engine.models import (
    CacheRecord,
    CacheSelection,
    ContainerGroupSpec,
    ImageCacheSpec,
    validation_failures,
)
from ...engine.refs import ImageRefError, parse_image_ref
from ..base import BackendError, NotFound, QuotaExceeded
from ..eci_api import API_VERSION, cache_to_api, group_to_api
from ..local.backend import LocalBackend
from .signing import MAX_CLOCK_SKEW, SignatureError, verify

log = logging.getLogger("eci_imagecache.emulator")
T = TypeVar("T")

# Our property names -> the API's parameter names, for error messages users can act on.
PARAMETER_NAMES = {
    "name": "ImageCacheName",
    "images": "Image",
    "size_gib": "ImageCacheSize",
    "retention_days": "RetentionDays",
    "eviction": "EliminationStrategy",
    "instant_copies": "FlashCopyCount",
    "credentials": "ImageRegistryCredential",
    "containers": "Container",
    "cache_id": "ImageSnapshotId",
    "extra_ephemeral_storage_gib": "EphemeralStorage",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``Image.1=a&Container.1.Port.1.Port=80`` -> ``{"Image": ["a"], "Container": [...]}``."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        node = root
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(int(part) if part.isdigit() else part, {})
            if not isinstance(node, dict):
                raise ApiError(400, "InvalidParameter", f"parameter {parts[0]} is malformed")
        last = parts[-1]
        node[int(last) if last.isdigit() else last] = value

    def lists(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        if node and all(isinstance(k, int) for k in node):
            return [lists(node[k]) for k in sorted(node)]
        return {k: lists(v) for k, v in node.items()}

    return lists(root)


def _flag(value: Any) -> bool | None:
    return None if value is None else str(value).lower() == "true"


def _int(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"InvalidParameter.{name}", f"{name} must be an integer") from None


def _hosts(value: Any) -> list[str]:
    return [h.strip() for h in str(value or "").split(",") if h.strip()]


def _credentials(params: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {
            "server": c.get("Server", ""),
            "username": c.get("UserName", ""),
            "password": c.get("Password", ""),
        }
        for c in params.get("ImageRegistryCredential") or []
    ]


def _tags(params: dict[str, Any]) -> dict[str, str]:
    return {t.get("Key", ""): t.get("Value", "") for t in params.get("Tag") or []}


def _page(items: list[T], params: dict[str, Any], default_limit: int) -> tuple[list[T], dict]:
    """One page of a Describe answer: ``Limit`` items from the offset in ``NextToken``."""
    limit = min(_int(params, "Limit") or default_limit, 100)
    token = str(params.get("NextToken") or "0")
    if not token.isdigit():
        raise ApiError(400, "InvalidParameter.NextToken", "NextToken is not one this API gave")
    start = int(token)
    more = start + limit < len(items)
    return items[start : start + limit], {
        "TotalCount": len(items),
        "NextToken": str(start + limit) if more else "",
    }


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


class Emulator:
    """The actions, on one local backend. Thread-safe: the backend is."""

    def __init__(self, backend: LocalBackend) -> None:
        self.backend = backend
        self._tokens: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._token_locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        handler: Callable[[dict[str, Any]], dict[str, Any]] | None = getattr(
            self, f"do_{action}", None
        )
        if handler is None:
            raise ApiError(404, "InvalidAction.NotFound", f"the action {action} is not supported")
        try:
            return handler(params)
        except ValidationError as err:
            prop, message = validation_failures(err)[0]
            name = PARAMETER_NAMES.get(prop.split(".")[0], prop)
            raise ApiError(400, f"InvalidParameter.{name}", f"{name}: {message}") from None
        except ImageRefError as err:
            raise ApiError(400, "InvalidParameter.Image", str(err)) from None
        except NotFound as err:
            raise ApiError(404, "ResourceNotFound", str(err)) from None
        except QuotaExceeded as err:
            raise ApiError(403, "QuotaExceeded.ImageCache", str(err)) from None
        except BackendError as err:
            raise ApiError(400, "OperationFailed", str(err)) from None

    def _idempotent(self, action: str, params: dict[str, Any], create: Callable[[], str]) -> str:
        """One create per ClientToken, even when retries race; other tokens are not held up."""
        token = params.get("ClientToken")
        if not token:
            return create()
        key = (action, token)
        with self._lock:
            lock = self._token_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._tokens:
                self._tokens[key] = create()
            with self._lock:
                while len(self._tokens) > 10_000:
                    old, _ = self._tokens.popitem(last=False)
                    self._token_locks.pop(old, None)
            return self._tokens[key]

    # image caches -------------------------------------------------------------------------

    def _cache_spec(
        self, params: dict[str, Any], base: CacheRecord | None = None
    ) -> ImageCacheSpec:
        def pick(name: str, current: Any) -> Any:
            return params[name] if params.get(name) not in (None, "") else current

        return ImageCacheSpec(
            name=pick("ImageCacheName", base.name if base else None),
            images=_as_list(params.get("Image")) or ([str(i) for i in base.images] if base else []),
            size_gib=_int(params, "ImageCacheSize") or (base.size_gib if base else 20),
            retention_days=_int(params, "RetentionDays") or (base.retention_days if base else None),
            eviction=pick("EliminationStrategy", base.eviction.value if base else ""),
            instant=_flag(params.get("Flash"))
            if "Flash" in params
            else bool(base and base.instant),
            instant_copies=_int(params, "FlashCopyCount") or 1,
            layer_reuse=_flag(params.get("AutoMatchImageCache"))
            if "AutoMatchImageCache" in params
            else bool(base and base.layer_reuse),
            credentials=_credentials(params),
            insecure_registries=_hosts(params.get("InsecureRegistry")),
            plain_http_registries=_hosts(params.get("PlainHttpRegistry")),
            vswitch_id=params.get("VSwitchId"),
            security_group_id=params.get("SecurityGroupId"),
            eip_instance_id=params.get("EipInstanceId"),
            tags=_tags(params),
        )

    def do_CreateImageCache(self, params: dict[str, Any]) -> dict[str, Any]:
        spec = self._cache_spec(params)
        cache_id = self._idempotent(
            "CreateImageCache", params, lambda: self.backend.create_image_cache(spec, wait=False).id
        )
        return {"ImageCacheId": cache_id, "ContainerGroupId": ""}

    def do_UpdateImageCache(self, params: dict[str, Any]) -> dict[str, Any]:
        current = self.backend.get_image_cache(params.get("ImageCacheId") or "")
        self.backend.update_image_cache(current.id, self._cache_spec(params, current), wait=False)
        return {}

    def do_DeleteImageCache(self, params: dict[str, Any]) -> dict[str, Any]:
        cache_id = params.get("ImageCacheId") or ""
        self.backend.get_image_cache(cache_id)
        self.backend.delete_image_cache(cache_id)
        return {}

    def do_DescribeImageCaches(self, params: dict[str, Any]) -> dict[str, Any]:
        caches = self.backend.list_image_caches()
        if params.get("ImageCacheId"):
            caches = [c for c in caches if c.id == params["ImageCacheId"]]
        if params.get("ImageCacheName"):
            caches = [c for c in caches if c.name == params["ImageCacheName"]]
        if params.get("SnapshotId"):
            caches = [c for c in caches if c.snapshot_id == params["SnapshotId"]]
        wanted = [parse_image_ref(i) for i in _as_list(params.get("MatchImage"))]
        if wanted:
            full = _flag(params.get("ImageFullMatch")) or False
            scored = [(c, score(c.images, wanted)) for c in caches]
            caches = [
                c
                for c, (exact, same) in scored
                if (exact == len(wanted) if full else exact + same > 0)
            ]
        page, paging = _page(caches, params, default_limit=10)
        region = self.backend.region
        return {
            "ImageCaches": [cache_to_api(c, self.backend.store.events(c.id), region) for c in page],
            **paging,
        }

    # container groups ---------------------------------------------------------------------

    def _containers(self, items: Any) -> list[dict[str, Any]]:
        containers = []
        for c in _as_list(items):
            containers.append(
                {
                    "name": c.get("Name", ""),
                    "image": c.get("Image", ""),
                    "image_pull_policy": c.get("ImagePullPolicy") or "IfNotPresent",
                    "command": _as_list(c.get("Command")),
                    "args": _as_list(c.get("Arg")),
                    "env": {
                        e.get("Key", ""): e.get("Value", "")
                        for e in _as_list(c.get("EnvironmentVar"))
                    },
                    "ports": [int(p.get("Port", 0)) for p in _as_list(c.get("Port"))],
                    **({"cpu": float(c["Cpu"])} if c.get("Cpu") else {}),
                    **({"memory_gib": float(c["Memory"])} if c.get("Memory") else {}),
                }
            )
        return containers

    def do_CreateContainerGroup(self, params: dict[str, Any]) -> dict[str, Any]:
        snapshot = params.get("ImageSnapshotId")
        cache_id = None
        if snapshot:
            matches = [
                c
                for c in self.backend.list_image_caches()
                if snapshot in (c.snapshot_id, f"flash-{c.id}")
            ]
            if not matches:
                raise ApiError(
                    404,
                    "InvalidParameter.ImageSnapshotId",
                    f"ImageSnapshotId: no image cache has snapshot {snapshot}",
                )
            cache_id = matches[0].id
        selection = (
            CacheSelection.EXPLICIT
            if cache_id
            else CacheSelection.AUTO_CREATE
            if _flag(params.get("AutoMatchImageCache"))
            else CacheSelection.NONE
        )
        spec = ContainerGroupSpec(
            name=params.get("ContainerGroupName") or "",
            containers=self._containers(params.get("Container")),
            init_containers=self._containers(params.get("InitContainer")),
            extra_ephemeral_storage_gib=_int(params, "EphemeralStorage") or 0,
            cache=selection,
            cache_id=cache_id,
            restart_policy=params.get("RestartPolicy") or "Always",
            credentials=_credentials(params),
            insecure_registries=_hosts(params.get("InsecureRegistry")),
            plain_http_registries=_hosts(params.get("PlainHttpRegistry")),
            vswitch_id=params.get("VSwitchId"),
            security_group_id=params.get("SecurityGroupId"),
            tags=_tags(params),
            **({"cpu": float(params["Cpu"])} if params.get("Cpu") else {}),
            **({"memory_gib": float(params["Memory"])} if params.get("Memory") else {}),
        )
        group_id = self._idempotent(
            "CreateContainerGroup", params, lambda: self.backend.create_container_group(spec).id
        )
        return {"ContainerGroupId": group_id}

    def do_DescribeContainerGroups(self, params: dict[str, Any]) -> dict[str, Any]:
        groups = self.backend.list_container_groups()
        if params.get("ContainerGroupIds"):
            try:
                ids = set(json.loads(params["ContainerGroupIds"]))
            except ValueError:
                raise ApiError(
                    400,
                    "InvalidParameter.ContainerGroupIds",
                    "ContainerGroupIds must be a JSON array",
                ) from None
            groups = [g for g in groups if g.id in ids]
        if params.get("ContainerGroupName"):
            groups = [g for g in groups if g.name == params["ContainerGroupName"]]
        page, paging = _page(groups, params, default_limit=20)
        return {"ContainerGroups": [group_to_api(g, self.backend.region) for g in page], **paging}

    def do_DeleteContainerGroup(self, params: dict[str, Any]) -> dict[str, Any]:
        group_id = params.get("ContainerGroupId") or ""
        self.backend.get_container_group(group_id)
        self.backend.delete_container_group(group_id)
        return {}

    def do_ListUsage(self, params: dict[str, Any]) -> dict[str, Any]:
        usage = self.backend.usage()
        return {
            "Attributes": {
                "MaxImageCacheCount": usage.quota.max_manual,
                "MaxAutoImageCacheCount": usage.quota.max_auto,
                "ImageCacheCount": usage.manual,
                "AutoImageCacheCount": usage.auto,
            }
        }


class EmulatorServer:
    """Serve :class:`Emulator` on ``host:port`` (loopback by default); verify every signature."""

    def __init__(
        self,
        backend: LocalBackend,
        access_keys: dict[str, str],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not access_keys:
            raise ValueError("the emulator needs at least one access key to verify requests")
        self.emulator = Emulator(backend)
        self.access_keys = dict(access_keys)
        self._nonces: OrderedDict[str, float] = OrderedDict()  # nonce -> when it was seen
        self._nonce_lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the default logs the URL, which may hold a password

            def do_POST(self) -> None:
                outer._handle(self)

            do_GET = do_POST

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.httpd = Server((host, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def _fresh_nonce(self, nonce: str) -> bool:
        """A nonce is accepted once. Requests older than the allowed clock skew are refused
        anyway, so nonces are remembered for twice that and then forgotten."""
        now = time.monotonic()
        horizon = 2 * MAX_CLOCK_SKEW.total_seconds()
        with self._nonce_lock:
            while self._nonces and now - next(iter(self._nonces.values())) > horizon:
                self._nonces.popitem(last=False)
            if not nonce or nonce in self._nonces:
                return False
            self._nonces[nonce] = now
            return True

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        request_id = secrets.token_hex(16).upper()
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        url = urlsplit(request.path)
        query = parse_qsl(url.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in request.headers.items()}
        action = headers.get("x-acs-action") or dict(query).get("Action", "")
        status, payload = 200, {}
        try:
            verify(request.command, url.path, query, headers, body, self.access_keys)
            if not self._fresh_nonce(headers.get("x-acs-signature-nonce", "")):
                raise ApiError(400, "SignatureNonceUsed", "the signature nonce was used already")
            if headers.get("x-acs-version") != API_VERSION:
                raise ApiError(
                    400, "InvalidVersion", f"only version {API_VERSION} of the ECI API is served"
                )
            params = dict(query)
            if body and "form" in headers.get("content-type", ""):
                params.update(parse_qsl(body.decode(), keep_blank_values=True))
            payload = self.emulator.call(action, unflatten(list(params.items())))
        except SignatureError as err:
            status, payload = (
                (404 if err.code.endswith("NotFound") else 400),
                {"Code": err.code, "Message": str(err)},
            )
        except ApiError as err:
            status, payload = err.status, {"Code": err.code, "Message": err.message}
        except Exception as err:  # a bug: answer 500 without details that could hold secrets
            log.exception("emulator: %s failed", action)
            status, payload = (
                500,
                {"Code": "InternalError", "Message": f"the emulator failed ({type(err).__name__})"},
            )
        payload = {"RequestId": request_id, **payload}
        if status != 200:
            payload.setdefault("HostId", "eci.emulator.local")
        data = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json;charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        request.send_header("x-acs-request-id", request_id)
        request.end_headers()
        request.wfile.write(data)
        log.info("%s %s", action or "-", status)

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
