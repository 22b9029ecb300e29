"""The plugin as the Pulumi engine sees it: the installed executable, spoken to over gRPC with
the protocol's own messages (the SDK's generated stubs)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
from pulumi.provider.experimental.property_value import PropertyValue
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from eci_imagecache.plugin.values import to_property, to_python

PLUGIN = "pulumi-resource-eci-imagecache"
STACK = "urn:pulumi:test::proj::"


def urn(type_token: str, name: str) -> str:
    return f"{STACK}{type_token}::{name}"


def struct(values: Mapping[str, Any], secret: tuple[str, ...] = ()) -> Any:
    return PropertyValue.marshal_map(
        {k: to_property(v, secret=k in secret) for k, v in values.items()}
    )


def plain(values: Any) -> dict[str, Any]:
    return {k: to_python(v) for k, v in PropertyValue.unmarshal_map(values).items()}


def secrets(values: Any) -> set[str]:
    return {k for k, v in PropertyValue.unmarshal_map(values).items() if v.contains_secret()}


class Plugin:
    """One plugin process; each call is one RPC, answered or raising ``grpc.RpcError``."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        # The venv's: the one this test's interpreter installed (an editable install).
        executable = str(Path(sys.executable).parent / PLUGIN)
        self.process = subprocess.Popen(
            [executable, "127.0.0.1:1"],  # the engine is not called by these hooks
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        port = self.process.stdout.readline().decode().strip()  # type: ignore[union-attr]
        assert port.isdigit(), self.process.stderr.read().decode()  # type: ignore[union-attr]
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.process.terminate()
        self.process.wait(timeout=10)

    def schema(self) -> str:
        return self.stub.GetSchema(provider_pb2.GetSchemaRequest(version=0)).schema

    def configure(self, **config: Any) -> Any:
        return self.stub.Configure(
            provider_pb2.ConfigureRequest(args=struct(config), acceptSecrets=True)
        )

    def check(
        self, type_token: str, name: str, news: Mapping[str, Any], olds: Any = None, secret=()
    ) -> Any:
        return self.stub.Check(
            provider_pb2.CheckRequest(
                urn=urn(type_token, name),
                olds=olds if olds is not None else struct({}),
                news=struct(news, secret),
            )
        )

    def diff(self, type_token: str, name: str, id_: str, olds: Any, news: Any) -> Any:
        return self.stub.Diff(
            provider_pb2.DiffRequest(urn=urn(type_token, name), id=id_, olds=olds, news=news)
        )

    def create(self, type_token: str, name: str, properties: Any) -> Any:
        return self.stub.Create(
            provider_pb2.CreateRequest(urn=urn(type_token, name), properties=properties)
        )

    def read(self, type_token: str, name: str, id_: str, properties=None, inputs=None) -> Any:
        return self.stub.Read(
            provider_pb2.ReadRequest(
                urn=urn(type_token, name),
                id=id_,
                properties=properties or struct({}),
                inputs=inputs or struct({}),
            )
        )

    def update(self, type_token: str, name: str, id_: str, olds: Any, news: Any) -> Any:
        return self.stub.Update(
            provider_pb2.UpdateRequest(urn=urn(type_token, name), id=id_, olds=olds, news=news)
        )

    def delete(self, type_token: str, name: str, id_: str, properties: Any) -> Any:
        return self.stub.Delete(
            provider_pb2.DeleteRequest(urn=urn(type_token, name), id=id_, properties=properties)
        )
