"""Pulumi dynamic providers and resources: the glue between Pulumi and the cache engine."""

from . import server
from .container_group import ContainerArgs, ContainerGroup, ContainerGroupArgs
from .image_cache import ImageCache, ImageCacheArgs, RegistryCredentialArgs

# Inside the dynamic-provider process (where the engine deserializes our providers), close the
# SDK server's gaps: detailed diffs and errors without tracebacks (see ``server``).
server.install()

__all__ = [
    "ContainerArgs",
    "ContainerGroup",
    "ContainerGroupArgs",
    "ImageCache",
    "ImageCacheArgs",
    "RegistryCredentialArgs",
]
