"""``pulumi-resource-eci-imagecache``: the plugin process the Pulumi CLI starts.

The CLI runs it with the engine's address; it prints the port of its gRPC server and serves
until the CLI ends it. Serving is the SDK's (``pulumi.provider.experimental.server``), with one
change: an error meant for the user (:class:`UserError`: a backend's failure, a refusal) is
reported as its message, where the SDK's server appends the Python stack to every error; one
that made its resource (a container group that did not come up) carries the resource's
partial state, as the dynamic providers' does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

import grpc
import grpc.aio
from pulumi.provider.experimental.property_value import PropertyValue
from pulumi.provider.experimental.server import ProviderServicer
from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS
from pulumi.runtime.proto import provider_pb2_grpc

from ..dynamic.lifetime import end_with_cli
from ..dynamic.sdk_server_patch import UserError, init_failed_metadata
from .provider import EciImageCacheProvider, PartialState
from .schema import VERSION

HOOKS = (
    "Check",
    "Diff",
    "Create",
    "Read",
    "Update",
    "Delete",
    "Configure",
    "CheckConfig",
    "DiffConfig",
    "GetSchema",
)


def _user_error(error: BaseException) -> UserError | None:
    """The UserError an error is, or was raised while handling (the SDK re-raises)."""
    while error is not None:
        if isinstance(error, UserError):
            return error
        error = error.__context__ or error.__cause__  # type: ignore[assignment]
    return None


class Servicer(ProviderServicer):
    pass


def _reporting(name: str) -> Any:
    served = getattr(ProviderServicer, name)

    async def method(self: Servicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await served(self, request, context)
        except Exception as err:
            user = _user_error(err)
            if user is None:
                raise
            metadata: Any = ()
            if isinstance(user, PartialState):  # made, not up: the engine keeps it
                properties = PropertyValue.marshal_map(user.properties)
                metadata = init_failed_metadata(str(user), user.id, properties)
            await context.abort(grpc.StatusCode.UNKNOWN, str(user), trailing_metadata=metadata)

    method.__name__ = name
    return method


for _name in HOOKS:
    setattr(Servicer, _name, _reporting(_name))


async def serve(engine_address: str, args: list[str]) -> None:
    server = grpc.aio.server(options=_GRPC_CHANNEL_OPTIONS)
    servicer = Servicer(args, VERSION, EciImageCacheProvider(), engine_address=engine_address)
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(servicer, server)
    port = server.add_insecure_port(address="127.0.0.1:0")
    await server.start()
    sys.stdout.buffer.write(f"{port}\n".encode())
    sys.stdout.buffer.flush()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description="Pulumi resource provider plugin eci-imagecache")
    parser.add_argument("engine", help="the Pulumi engine's address")
    known, _ = parser.parse_known_args()
    end_with_cli()  # a CLI killed with SIGKILL cannot end its plugins: they end themselves
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(known.engine, sys.argv[1:]))


if __name__ == "__main__":
    main()
