"""Quickstart: an image cache on the embedded local backend."""

import pulumi

from eci_imagecache.dynamic import ImageCache, ImageCacheArgs

config = pulumi.Config()
cache = ImageCache(
    "web-cache",
    ImageCacheArgs(
        images=config.get_object("images") or ["nginx:1.27", "redis:7"],
        retention_days=config.get_int("retentionDays"),
        eviction="LRU",
    ),
)

pulumi.export("cache_id", cache.cache_id)
pulumi.export("status", cache.status)
pulumi.export("images", cache.images)
