"""Pulumi dynamic providers and resources: the glue between Pulumi and the cache engine."""

from .container_group import ContainerArgs, ContainerGroup, ContainerGroupArgs
from .image_cache import ImageCache, ImageCacheArgs, RegistryCredentialArgs

__all__ = [
    "ContainerArgs",
    "ContainerGroup",
    "ContainerGroupArgs",
    "ImageCache",
    "ImageCacheArgs",
    "RegistryCredentialArgs",
]
