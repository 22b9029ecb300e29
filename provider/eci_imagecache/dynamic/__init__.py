"""Pulumi dynamic providers and resources: the glue between Pulumi and the cache engine."""

from .image_cache import ImageCache, ImageCacheArgs

__all__ = ["ImageCache", "ImageCacheArgs"]
