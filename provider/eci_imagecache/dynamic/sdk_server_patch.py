"""A patch of the Python SDK's dynamic-provider server (pulumi 3.272): three gaps, closed from
inside the server process by replacing two of its module globals (``proto``, ``traceback``).
Also the errors our hooks raise for that server to report (:class:`UserError`,
:class:`ResourceInitFailed`), which the plugin's server reports the same way.

1. ``DiffResult`` cannot carry a detailed diff, so the server never sends one: ``pulumi preview
   --diff`` then shows ``(update)`` without property lines after drift, and ``--json`` has
   ``detailedDiff: null``. Our ``diff`` hooks hand their per-property diff to
   :func:`send_detailed_diff`; the server's ``DiffResponse`` is built with it (and the list of
   changed keys), in the same thread, right after the hook returns.
2. The server reports every exception as a Python traceback. Errors we raise on purpose
   (:class:`UserError`) carry a message written for the user: only that message is sent.
3. A create can only succeed or fail: the protocol's third answer, "made, but it did not come
   up" (the ``ErrorResourceInitFailed`` error detail), is missing. A hook raises
   :class:`ResourceInitFailed` with the resource's id and outputs: the engine keeps the
   resource in the stack with them, fails the deployment with the message, and the next
   ``up`` or ``destroy`` deals with it.

All three apply only inside the provider process (``python -m pulumi.dynamic``), once, when this
package is first imported there (the engine deserializes our providers, which imports it).
Anywhere else :func:`patch_sdk_server` does nothing. The end-to-end tests check both behaviours
under the real CLI, so an SDK upgrade that changes the server is caught.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
from typing import Any

import grpc

# Detailed-diff kinds, as the provider protocol names them.
UPDATE, UPDATE_REPLACE, ADD, ADD_REPLACE, DELETE, DELETE_REPLACE = (
    "UPDATE",
    "UPDATE_REPLACE",
    "ADD",
    "ADD_REPLACE",
    "DELETE",
    "DELETE_REPLACE",
)


class UserError(Exception):
    """An error whose message is meant for the user: reported without a traceback."""


class ResourceInitFailed(UserError):
    """The resource was made (``id_``, its outputs ``outs``) but did not come up: the engine
    keeps it in the stack and fails the deployment with this message."""

    def __init__(self, message: str, id_: str, outs: dict[str, Any]) -> None:
        super().__init__(message)
        self.id = id_
        self.outs = outs


# Where the SDK keeps the serialized provider in every state it writes.
PROVIDER_KEY = "__provider"

_pending = threading.local()


def send_detailed_diff(detail: dict[str, str]) -> None:
    """Attach ``{property: kind}`` to the diff the calling hook is about to return."""
    _pending.detail = dict(detail)


def take_detailed_diff() -> dict[str, str] | None:
    """The detailed diff the calling thread's hook handed over, if any (taken: only once)."""
    detail = getattr(_pending, "detail", None)
    _pending.detail = None
    return detail


class _DiffResponse:
    """The protocol's ``DiffResponse``: its constants as they are, its constructor adding the
    detailed diff the hook handed over."""

    def __init__(self, proto: Any) -> None:
        self._proto = proto

    def __getattr__(self, name: str) -> Any:
        return getattr(self._proto.DiffResponse, name)

    def __call__(self, **fields: Any) -> Any:
        detail = take_detailed_diff()
        if detail is not None:
            kinds = self._proto.PropertyDiff
            fields["detailedDiff"] = {
                key: kinds(kind=getattr(kinds, kind), inputDiff=False)
                for key, kind in detail.items()
            }
            fields["hasDetailedDiff"] = True
            fields["diffs"] = sorted({key.split(".")[0].split("[")[0] for key in detail})
        return self._proto.DiffResponse(**fields)


class _Proto:
    """The SDK's protocol module, with a ``DiffResponse`` that carries the detailed diff."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.DiffResponse = _DiffResponse(real)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Traceback:
    """``traceback`` for the server: a :class:`UserError` is reported as its message, and a
    :class:`ResourceInitFailed` adds the partial state to the abort that follows."""

    def __getattr__(self, name: str) -> Any:
        return getattr(traceback, name)

    @staticmethod
    def format_exc(*args: Any, **kwargs: Any) -> str:
        error = sys.exc_info()[1]
        if isinstance(error, ResourceInitFailed):
            # Called by the server's error handler (``_abort_with_traceback``), which aborts
            # the call with this text next: the status details go with it.
            handler = sys._getframe(1).f_locals
            context, request = handler.get("context"), handler.get("request")
            if context is not None and request is not None:
                properties = request.news if hasattr(request, "news") else request.properties
                context.set_trailing_metadata(
                    _init_failed_metadata(error, properties.fields[PROVIDER_KEY])
                )
        if isinstance(error, UserError):
            return str(error)
        return traceback.format_exc(*args, **kwargs)


def _init_failed_metadata(error: ResourceInitFailed, provider: Any) -> tuple[tuple[str, bytes]]:
    """The trailing metadata for a dynamic provider's :class:`ResourceInitFailed`: its outputs
    serialized as the SDK's server serializes a create's, with the provider itself."""
    from pulumi.runtime import rpc

    loop = asyncio.new_event_loop()
    try:
        properties = loop.run_until_complete(rpc.serialize_properties(error.outs, {}))
    finally:
        loop.close()
    # The provider itself, as the request carried it: delete and update deserialize it.
    properties.fields[PROVIDER_KEY].CopyFrom(provider)
    return init_failed_metadata(str(error), error.id, properties)


def init_failed_metadata(message: str, id_: str, properties: Any) -> tuple[tuple[str, bytes]]:
    """The trailing metadata of a gRPC status carrying ``ErrorResourceInitFailed`` (the
    resource's id, its outputs as a protocol ``Struct``, the reason), built as the SDK's
    component provider server builds its ``InputPropertiesError`` status
    (pulumi/provider/server.py). Sent with an abort of code UNKNOWN and this message."""
    from pulumi.runtime.proto import provider_pb2, status_pb2

    detail = provider_pb2.ErrorResourceInitFailed(id=id_, properties=properties, reasons=[message])
    rich = status_pb2.Status(code=grpc.StatusCode.UNKNOWN.value[0], message=message)
    rich.details.add().Pack(detail)
    return (("grpc-status-details-bin", rich.SerializeToString()),)


def patch_sdk_server() -> bool:
    """Patch the SDK's dynamic-provider server, if this process is one (``python -m
    pulumi.dynamic``); ``False`` (and nothing done) anywhere else."""
    # The server's own module: we replace two of its globals.
    server: Any = sys.modules.get("__main__")
    if server is None or not hasattr(server, "DynamicResourceProviderServicer"):
        return False
    if not isinstance(getattr(server, "proto", None), _Proto):
        server.proto = _Proto(server.proto)
    if not isinstance(getattr(server, "traceback", None), _Traceback):
        server.traceback = _Traceback()
    return True
