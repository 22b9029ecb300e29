"""Pulumi dynamic providers and resources: the glue between Pulumi and the cache engine."""

from . import sdk_server_patch
from .container_group import ContainerArgs, ContainerGroup, ContainerGroupArgs
from .image_cache import ImageCache, ImageCacheArgs, RegistryCredentialArgs

# Inside the dynamic-provider process (where the engine deserializes our providers), close the
# SDK server's gaps: detailed diffs and errors without tracebacks (see ``sdk_server_patch``).
sdk_server_patch.patch_sdk_server()

__all__ = [
    "ContainerArgs",
    "ContainerGroup",
    "ContainerGroupArgs",
    "ImageCache",
    "ImageCacheArgs",
    "RegistryCredentialArgs",
]
