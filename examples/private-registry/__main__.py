"""An image cache of a private registry's images; the password is a stack secret.

Written with keyword arguments and pulumi-alicloud's names (``image_cache_name``,
``image_registry_credentials`` with ``user_name``), as a program moving from
``alicloud.eci.ImageCache`` would keep them. Without ``username`` the cache has no credentials.
"""

import pulumi

from eci_imagecache.dynamic import ImageCache

config = pulumi.Config()
registry = config.require("registry")
username = config.get("username")
cache = ImageCache(
    "private-cache",
    image_cache_name="private-cache",
    images=[f"{registry}/{config.get('image') or 'demo/web:1.0'}"],
    image_registry_credentials=[
        {"server": registry, "user_name": username, "password": config.require_secret("password")}
    ]
    if username
    else [],
)
pulumi.export("cache_id", cache.cache_id)
pulumi.export("status", cache.status)
pulumi.export("change", cache.change)
