"""The vendor's recommendations for ECI image caches as CrossGuard policies.

Each rule is a plain function of a resource's type and inputs that returns the violations it
finds, so it can be run on any property map (a preview's JSON, a test); ``__main__.py`` wraps the
rules into a ``PolicyPack`` for ``pulumi preview --policy-pack``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import ip_address
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from eci_imagecache.engine.models import MAX_IMAGES_PER_CACHE
from eci_imagecache.engine.refs import ImageRef, ImageRefError, parse_image_ref

CACHE = "pulumi-python:dynamic/eci:ImageCache"
GROUP = "pulumi-python:dynamic/eci:ContainerGroup"
AUTOMATIC = ("auto", "auto-create")
# Registries that serve public images anonymously; others are taken to be private.
ANONYMOUS_REGISTRIES = (
    "docker.io",
    "ghcr.io",
    "quay.io",
    "gcr.io",
    "registry.k8s.io",
    "mcr.microsoft.com",
    "public.ecr.aws",
)
# Alibaba Cloud Container Registry hosts: reached inside the cloud, authorised by the account.
ACR_SUFFIX = ".aliyuncs.com"
# Resources that give instances in a VPC a way to the internet.
INTERNET_ACCESS_TYPES = frozenset(
    {
        "alicloud:vpc/natGateway:NatGateway",
        "alicloud:vpc/snatEntry:SnatEntry",
        "alicloud:ecs/eipAddress:EipAddress",
        "alicloud:ecs/eipAssociation:EipAssociation",
    }
)

Props = Mapping[str, Any]


def _images(kind: str, props: Props) -> list[ImageRef]:
    if kind == CACHE:
        raw = list(props.get("images") or [])
    else:
        containers = [*(props.get("containers") or []), *(props.get("init_containers") or [])]
        raw = [c.get("image") for c in containers if isinstance(c, Mapping) and c.get("image")]
    refs = []
    for ref in raw:
        try:
            refs.append(parse_image_ref(str(ref)))
        except ImageRefError:
            continue  # the resource's own check reports malformed references
    return sorted(set(refs))


def _selection(props: Props) -> str:
    return str(props.get("cache") or ("explicit" if props.get("cache_id") else "auto-create"))


def _is_loopback(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _is_acr(registry: str) -> bool:
    return registry.split(":", 1)[0].endswith(ACR_SUFFIX)


def manual_cache_without_retention(kind: str, props: Props) -> list[str]:
    if kind != CACHE or props.get("retention_days") is not None:
        return []
    return [
        "manual image cache without retention_days: its snapshot is billed until it is deleted; "
        "set retention_days to avoid unnecessary snapshot fees"
    ]


def too_many_images(kind: str, props: Props) -> list[str]:
    if kind == GROUP and _selection(props) not in AUTOMATIC:
        return []
    if kind not in (CACHE, GROUP):
        return []
    count = len(_images(kind, props))
    if count <= MAX_IMAGES_PER_CACHE:
        return []
    what = "an image cache" if kind == CACHE else "the cache created for this group"
    return [f"{count} images: {what} holds at most {MAX_IMAGES_PER_CACHE}"]


def pull_policy_always_with_automatic_matching(kind: str, props: Props) -> list[str]:
    if kind != GROUP or _selection(props) not in AUTOMATIC:
        return []
    containers = [*(props.get("containers") or []), *(props.get("init_containers") or [])]
    always = sorted(
        str(c.get("name"))
        for c in containers
        if isinstance(c, Mapping) and c.get("image_pull_policy") == "Always"
    )
    if not always:
        return []
    return [
        f"automatic cache matching with image pull policy Always ({', '.join(always)}): the "
        "layers are downloaded again and the cache does not help; use IfNotPresent"
    ]


def private_registry_without_credentials(
    kind: str, props: Props, anonymous: Iterable[str] = ANONYMOUS_REGISTRIES
) -> list[str]:
    if kind not in (CACHE, GROUP):
        return []
    servers = {
        str(c.get("server") or "").lower().removeprefix("https://").removeprefix("http://")
        for c in props.get("credentials") or []
        if isinstance(c, Mapping)
    }
    local = (props.get("backend") or "local") == "local"
    anonymous = set(anonymous)
    missing = sorted(
        {
            ref.registry
            for ref in _images(kind, props)
            if ref.registry not in anonymous
            and not _is_acr(ref.registry)
            and not (local and _is_loopback(ref.registry))
            and ref.registry not in servers
        }
    )
    return [
        f"images from the private registry {registry} (not Alibaba Cloud Container Registry) "
        "without credentials for it: add credentials (server, username, password)"
        for registry in missing
    ]


def public_images_without_internet(
    resources: Iterable[tuple[str, str, Props]], internet_declared: bool = False
) -> list[tuple[str, str]]:
    """(urn, message) for alicloud caches and groups that pull over the public network while
    nothing gives them internet access: no EIP on the cache, no NAT gateway or EIP in the stack.
    """
    resources = list(resources)
    if internet_declared or any(kind in INTERNET_ACCESS_TYPES for _, kind, _ in resources):
        return []
    found = []
    for urn, kind, props in resources:
        if kind not in (CACHE, GROUP) or props.get("backend") != "alicloud":
            continue
        if kind == CACHE and props.get("eip_instance_id"):
            continue
        public = sorted({ref.registry for ref in _images(kind, props) if not _is_acr(ref.registry)})
        if public:
            own = "the cache has no eip_instance_id and " if kind == CACHE else ""
            found.append(
                (
                    urn,
                    f"pulls from {', '.join(public)} over the public network, but {own}the "
                    "stack has no NAT gateway or EIP: add one, or push the images to Alibaba "
                    "Cloud Container Registry",
                )
            )
    return found


def _resource_policy(name: str, description: str, level: EnforcementLevel, rule: Any, **extra: Any):
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type not in (CACHE, GROUP):
            return
        config = args.get_config() if "config_schema" in extra else {}
        options = {"anonymous": config["anonymousRegistries"]} if config else {}
        for message in rule(args.resource_type, args.props, **options):
            report(message)

    return ResourceValidationPolicy(
        name=name, description=description, enforcement_level=level, validate=validate, **extra
    )


def _internet_access(args: StackValidationArgs, report: ReportViolation) -> None:
    declared = bool(args.get_config().get("internetAccessOutsideStack"))
    resources = [
        (r.urn, r.resource_type, r.props if r.resource_type in (CACHE, GROUP) else {})
        for r in args.resources
        if r.resource_type in (CACHE, GROUP) or r.resource_type in INTERNET_ACCESS_TYPES
    ]
    for urn, message in public_images_without_internet(resources, declared):
        report(message, urn)


POLICIES = [
    _resource_policy(
        "manual-cache-retention",
        "Manual image caches should set a retention period to avoid unnecessary snapshot fees.",
        EnforcementLevel.ADVISORY,
        manual_cache_without_retention,
    ),
    _resource_policy(
        "at-most-20-images",
        "An image cache holds at most 20 images.",
        EnforcementLevel.MANDATORY,
        too_many_images,
    ),
    _resource_policy(
        "automatic-matching-pull-policy",
        "Groups that match caches automatically should pull with IfNotPresent, not Always.",
        EnforcementLevel.ADVISORY,
        pull_policy_always_with_automatic_matching,
    ),
    _resource_policy(
        "private-registry-credentials",
        "Images from a private registry outside Alibaba Cloud Container Registry need credentials.",
        EnforcementLevel.MANDATORY,
        private_registry_without_credentials,
        config_schema=PolicyConfigSchema(
            properties={
                "anonymousRegistries": {
                    "type": "array",
                    "items": {"type": "string"},
                    "default": list(ANONYMOUS_REGISTRIES),
                }
            }
        ),
    ),
    StackValidationPolicy(
        name="public-images-need-internet-access",
        description=(
            "On Alibaba Cloud, images pulled over the public network need an EIP or a NAT gateway."
        ),
        enforcement_level=EnforcementLevel.ADVISORY,
        validate=_internet_access,
        config_schema=PolicyConfigSchema(
            properties={"internetAccessOutsideStack": {"type": "boolean", "default": False}}
        ),
    ),
]
