"""The ``ContainerGroup`` resource: an ECI instance whose images come from a cache when one fits.

What the program imports. Its hooks (check, diff, create, read, delete) are in
``container_group_provider``, which only the provider process imports: the cache is resolved
once, when the group is created, and recorded; ``check`` says in ``match_preview`` which cache
would be chosen. Any change to the group replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from .common import (
    ProviderRef,
    args_from,
    evaluated_outputs,
    program_placement,
    resource_inputs,
    resource_key,
    secret_credentials,
    settle_outputs,
)
from .image_cache import _STACK_CACHES
from .pricing import price_inputs

PROVIDER = ProviderRef(f"{__name__}_provider", "ContainerGroupProvider")


@dataclass
class ContainerArgs:
    """One container of a :class:`ContainerGroup`.

    - ``name``: the container's name (lowercase letters, digits, hyphens).
    - ``image``: its image reference (``nginx``, ``registry.example.com/team/app:1.2``).
    - ``command`` / ``args``: the entrypoint and its arguments (default: the image's).
    - ``env``: environment variables, name to value.
    - ``ports``: the ports it listens on.
    - ``working_dir``: an absolute path to start in (default: the image's).
    - ``cpu`` (cores) / ``memory_gib``: what it may use.
    - ``image_pull_policy``: ``IfNotPresent`` (the default) lets a cache serve the image;
      ``Always`` pulls it.
    """

    name: str
    image: pulumi.Input[str]
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    cpu: float | None = None
    memory_gib: float | None = None
    image_pull_policy: str = "IfNotPresent"
    working_dir: str | None = None

    def to_input(self) -> dict[str, Any]:
        """Only the fields given: unset ones would be values in every preview and checkpoint."""
        return {k: v for k, v in self.__dict__.items() if v is not None and v != [] and v != {}}


def containers_input(containers: Any) -> Any:
    """Containers as inputs: :class:`ContainerArgs` or dicts. Anything else is passed on as it
    is, for ``check`` to refuse naming the property (the program does not judge inputs)."""
    if not isinstance(containers, list | tuple):
        return containers
    return [c.to_input() if isinstance(c, ContainerArgs) else c for c in containers]


@dataclass
class ContainerGroupArgs:
    """Arguments of a :class:`ContainerGroup`.

    - ``containers`` / ``init_containers``: :class:`ContainerArgs`.
    - ``name``: the group's name (default: the resource name); ECI's rule applies: 2 to 128
      lowercase letters, digits and hyphens, not starting or ending with a hyphen.
    - ``cpu``, ``memory_gib``, ``extra_ephemeral_storage_gib`` (beyond the 30 GiB included),
      ``restart_policy`` (``Always``, ``OnFailure``, ``Never``).
    - ``pids_limit``: processes (threads count) the whole group may run, 1 to 4194304; podman's
      2048 unless set. Local backend only: Alibaba Cloud has no such setting and ignores it.
    - ``cache``: ``"auto-create"`` (match, create a cache on a miss; the default), ``"auto"``
      (match only), ``"explicit"`` (use ``cache_id``) or ``"none"``. Automatic matching counts
      the caches this program declares before the group, and waits for them.
    - ``cache_id``: pass an :class:`ImageCache`'s ``id``: it stays known while the cache is
      updated in place, so the group is not shown as replaced.
    - ``credentials``: :class:`RegistryCredentialArgs` for private registries;
      ``insecure_registries`` / ``plain_http_registries``.
    - ``vswitch_id``, ``security_group_id``, ``tags``.
    - Alibaba Cloud only, each change replaces: public network access (``eip_instance_id``, an
      existing EIP, or ``auto_create_eip`` with ``eip_bandwidth_mbps``), ``resource_group_id``,
      ``zone_id``, ``acr_registries`` (ACR Enterprise instances pulled from without a password).
    - ``backend`` / ``region``: where this group runs, when not where the stack's
      ``eci:backend`` / ``eci:region`` say.

    pulumi-alicloud's ``container_group_name`` and ``image_registry_credentials`` are accepted
    as keyword arguments too.
    """

    containers: list[ContainerArgs]
    init_containers: list[ContainerArgs] = field(default_factory=list)
    name: str | None = None
    cpu: float | None = None
    memory_gib: float | None = None
    extra_ephemeral_storage_gib: int | None = None
    restart_policy: str | None = None
    pids_limit: int | None = None
    cache: str | None = None
    cache_id: pulumi.Input[str] | None = None
    credentials: list[Any] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    plain_http_registries: list[str] = field(default_factory=list)
    vswitch_id: pulumi.Input[str] | None = None
    security_group_id: pulumi.Input[str] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    eip_instance_id: pulumi.Input[str] | None = None
    auto_create_eip: bool | None = None
    eip_bandwidth_mbps: int | None = None
    resource_group_id: pulumi.Input[str] | None = None
    zone_id: pulumi.Input[str] | None = None
    acr_registries: list[dict[str, Any]] = field(default_factory=list)
    backend: str | None = None
    region: str | None = None


ALICLOUD_NAMES = {
    "container_group_name": "name",
    "image_registry_credentials": "credentials",
}


@evaluated_outputs
class ContainerGroup(Resource, module="eci", name="ContainerGroup"):
    """An ECI container group that prepares its images from a matching image cache.

    ``ContainerGroup("api", ContainerGroupArgs(containers=[...]))`` or
    ``ContainerGroup("api", containers=[...], cache="auto")``.
    """

    group_id: pulumi.Output[str]
    status: pulumi.Output[str]
    images: pulumi.Output[list[str]]
    ephemeral_storage_gib: pulumi.Output[int]
    cache_used: pulumi.Output[str | None]
    cache_name: pulumi.Output[str | None]
    match_degree: pulumi.Output[str]
    match_reason: pulumi.Output[str]
    match_preview: pulumi.Output[str]
    auto_created_cache_id: pulumi.Output[str | None]
    bytes_fetched: pulumi.Output[int]
    bytes_from_cache: pulumi.Output[int]
    preparation_seconds: pulumi.Output[float]
    location: pulumi.Output[str]
    cost: pulumi.Output[dict[str, Any] | None]  # an estimate: extra ephemeral storage
    status_reason: pulumi.Output[str]
    containers_state: pulumi.Output[list[dict[str, Any]]]
    address: pulumi.Output[str | None]
    phases: pulumi.Output[dict[str, float | None]]

    def __init__(
        self,
        resource_name: str,
        args: ContainerGroupArgs | None = None,
        opts: pulumi.ResourceOptions | None = None,
        **kwargs: Any,
    ) -> None:
        args = args_from(ContainerGroupArgs, args, kwargs, ALICLOUD_NAMES)
        cache = args.cache or ("explicit" if args.cache_id is not None else None)
        matches = cache in (None, "auto", "auto-create")
        props: dict[str, Any] = {
            **program_placement(args.backend, args.region),
            "name": args.name or resource_name,
            "containers": containers_input(args.containers),
            "init_containers": containers_input(args.init_containers),
            "cpu": args.cpu,
            "memory_gib": args.memory_gib,
            "extra_ephemeral_storage_gib": args.extra_ephemeral_storage_gib,
            "restart_policy": args.restart_policy,
            "pids_limit": args.pids_limit,
            "cache": cache,
            "cache_id": args.cache_id,
            "credentials": secret_credentials(args.credentials),
            "insecure_registries": args.insecure_registries,
            "plain_http_registries": args.plain_http_registries,
            "vswitch_id": args.vswitch_id,
            "security_group_id": args.security_group_id,
            "tags": args.tags,
            "eip_instance_id": args.eip_instance_id,
            "auto_create_eip": args.auto_create_eip,
            "eip_bandwidth_mbps": args.eip_bandwidth_mbps,
            "resource_group_id": args.resource_group_id,
            "zone_id": args.zone_id,
            "acr_registries": args.acr_registries,
            # Automatic matching counts the program's caches (and so waits for them).
            "stack_caches": [
                {
                    "cache_id": c.id,
                    "name": c._declared["name"],
                    "images": c._declared["images"],
                    "size_gib": c._declared["size_gib"],
                }
                for c in _STACK_CACHES
            ]
            if matches
            else None,
            "prices": price_inputs(),
            "resource_key": resource_key("eci:ContainerGroup", resource_name, opts),
        }
        props, opts = resource_inputs(type(self), props, opts)
        super().__init__(PROVIDER, resource_name, props, opts)
        settle_outputs(self)


def __getattr__(name: str) -> Any:
    """``ContainerGroupProvider`` here is the name resources created before the hooks moved to
    ``container_group_provider`` carry in their state (the SDK pickled it by reference)."""
    if name == "ContainerGroupProvider":
        from .container_group_provider import ContainerGroupProvider

        return ContainerGroupProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
