"""Quickstart on the embedded local backend.

A cache for two images of the demo registry (``make demo`` starts one on 127.0.0.1:5055 with
generated images that run: busybox and some data), a container group that finds it by automatic
matching, one that names it explicitly, and one that uses no cache. The stack exports the
start-up of the same image with the cache and without it (from the create call to the container
running) and what the cache saved: the headline. The last group runs a real web server
(``demo/httpd``, built from busybox) that answers on ``web_address`` (port ``serverPort``, 8080
unless set).
"""

import pulumi

from eci_imagecache.dynamic import (
    ContainerArgs,
    ContainerGroup,
    ContainerGroupArgs,
    ImageCache,
    ImageCacheArgs,
)

config = pulumi.Config()
registry = config.get("registry") or "127.0.0.1:5055"
images = config.get_object("images") or [f"{registry}/demo/web:1.0", f"{registry}/demo/worker:1.0"]

cache = ImageCache(
    "web-cache",
    ImageCacheArgs(
        images=images,
        size_gib=config.get_int("sizeGib"),
        retention_days=config.get_int("retentionDays"),
        eviction="LRU",
        layer_reuse=config.get_bool("layerReuse") if config.get("layerReuse") else True,
        # An existing cache (e.g. made by hand) to bring under management instead of a new one.
        adopt_id=config.get("adoptCacheId"),
    ),
)

web = ContainerArgs(name="web", image=images[0])
matched = ContainerGroup(
    "web-auto",
    ContainerGroupArgs(containers=[web], cache="auto"),
    opts=pulumi.ResourceOptions(depends_on=[cache]),
)
explicit = ContainerGroup(
    "web-explicit",
    ContainerGroupArgs(containers=[web], cache_id=cache.id),
    opts=pulumi.ResourceOptions(depends_on=[matched]),
)
uncached = ContainerGroup(
    "web-uncached",
    ContainerGroupArgs(containers=[web], cache="none"),
    # One after the other: each start-up is measured with no other group starting meanwhile.
    opts=pulumi.ResourceOptions(depends_on=[explicit]),
)

port = config.get_int("serverPort") or 8080
server = ContainerGroup(
    "web-server",
    ContainerGroupArgs(
        containers=[
            ContainerArgs(
                name="httpd",
                image=f"{registry}/demo/httpd:1.0",
                env={"PORT": str(port)},
                ports=[port],
            )
        ],
        restart_policy="Always",
        cache="auto",  # use a cache if one holds the image; create none for it
    ),
)

pulumi.export("cache_id", cache.cache_id)
pulumi.export("cache_status", cache.status)
pulumi.export("build_plan", cache.build_plan)
pulumi.export(
    "auto_match",
    pulumi.Output.all(matched.cache_used, matched.match_degree, matched.match_reason).apply(
        lambda m: f"{m[0]} ({m[1]}): {m[2]}"
    ),
)
pulumi.export("explicit_match", explicit.cache_used)
pulumi.export(
    "preparation_seconds",
    {
        "from_cache": matched.preparation_seconds,
        "without_cache": uncached.preparation_seconds,
    },
)
pulumi.export(
    "preparation_saved_seconds",
    pulumi.Output.all(uncached.preparation_seconds, matched.preparation_seconds).apply(
        lambda t: round(t[0] - t[1], 3)
    ),
)


def headline(phases: list[dict]) -> str:
    without, with_cache = (p["startup_seconds"] for p in phases)
    return (
        f"start-up of {images[0]}: {without:.2f} s without a cache, {with_cache:.2f} s with"
        f" it: {without - with_cache:.2f} s saved ({without / max(with_cache, 1e-3):.1f}x)"
    )


# From the create call to the container running, for the same image, of the two groups created
# one after the other (the first group's start may also wait for the group supervisor that the
# provider then keeps ready for the next one: see docs/local-backend.md).
pulumi.export(
    "startup_seconds",
    {
        "with_cache": explicit.phases.apply(lambda p: p["startup_seconds"]),
        "without_cache": uncached.phases.apply(lambda p: p["startup_seconds"]),
    },
)
pulumi.export("startup", pulumi.Output.all(uncached.phases, explicit.phases).apply(headline))
pulumi.export("web_address", server.address)
pulumi.export("web_status", server.status)
pulumi.export("web_containers", server.containers_state)
pulumi.export("web_phases", server.phases)
