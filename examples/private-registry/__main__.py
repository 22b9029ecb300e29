"""An image cache of a private registry's images; the password is a stack secret."""

import pulumi

from eci_imagecache.dynamic import ImageCache, ImageCacheArgs, RegistryCredentialArgs

config = pulumi.Config()
registry = config.require("registry")
cache = ImageCache(
    "private-cache",
    ImageCacheArgs(
        images=[f"{registry}/demo/web:1.0"],
        credentials=[
            RegistryCredentialArgs(
                server=registry,
                username=config.require("username"),
                password=config.require_secret("password"),
            )
        ],
    ),
)
pulumi.export("cache_id", cache.cache_id)
pulumi.export("status", cache.status)
