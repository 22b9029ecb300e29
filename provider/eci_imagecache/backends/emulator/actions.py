"""The ECI actions, served from a local backend: SDK request model in, SDK response model out.

Each handler reads its request (the SDK's request model, read strictly by ``params``, which
also turns it into what the models take), calls one method of the region (``models``: the state,
the API's rules and the answers built beside them) and returns its answer, the SDK's response
model, which the server renders (``render``). Errors are mapped to the wire here, once.
"""

from __future__ import annotations

from typing import Any

from alibabacloud_eci20180808 import models as sdk
from pydantic import ValidationError

from ...engine.models import validation_failures
from ...engine.refs import ImageRefError
from ..base import BackendError, Conflict, InvalidSpec, NotFound, QuotaExceeded
from ..local.backend import LocalBackend
from . import errors, params
from .models import Region
from .state import EmulatorState

# Our property names -> the API's parameter names, for errors users can act on.
PARAMETER_NAMES = {
    "name": "ImageCacheName",
    "images": "Image",
    "size_gib": "ImageCacheSize",
    "retention_days": "RetentionDays",
    "eviction": "EliminationStrategy",
    "instant_copies": "FlashCopyCount",
    "standard_copies": "StandardCopyCount",
    "credentials": "ImageRegistryCredential",
    "containers": "Container",
    "init_containers": "InitContainer",
    "cache_id": "ImageSnapshotId",
    "extra_ephemeral_storage_gib": "EphemeralStorage",
    "eip_bandwidth_mbps": "EipBandwidth",
    "auto_create_eip": "AutoCreateEip",
    "tags": "Tag",
    "cpu": "Cpu",
    "memory_gib": "Memory",
    "restart_policy": "RestartPolicy",
}


def _invalid(err: ValidationError) -> errors.EciError:
    prop, message = validation_failures(err)[0]
    name = PARAMETER_NAMES.get(prop.split(".")[0], prop)
    # A message that may quote the value (a password can sit in any field) is not repeated.
    quotes = any(q in message for q in "'\"`")
    return errors.InvalidParameter(name, "is not valid" if quotes else message)


class Actions:
    """The actions, on one local backend. Thread-safe: the backend and the state are."""

    def __init__(self, backend: LocalBackend, state: EmulatorState, stale_reads: int = 0) -> None:
        self.backend = backend
        self.state = state
        self.region = Region(backend, state, stale_reads)

    def call(self, action: str, request: Any) -> Any:
        if request.region_id != self.region.id:
            raise errors.InvalidParameter("RegionId", f"this endpoint serves {self.region.id} only")
        try:
            return getattr(self, action)(request)
        except ValidationError as err:
            raise _invalid(err) from None
        except ImageRefError:
            raise errors.InvalidParameter("Image", "is not an image reference") from None
        except errors.EciError:
            raise
        except NotFound as err:
            raise errors.NotFoundError(str(err), "InvalidResource.NotFound") from None
        except QuotaExceeded as err:
            raise errors.ImageCacheQuotaExceeded(str(err)) from None
        except Conflict as err:
            raise errors.IncorrectStatus(str(err)) from None
        except InvalidSpec as err:
            raise errors.EciError(str(err), "InvalidParameter") from None
        except BackendError as err:
            raise errors.OperationFailed(str(err)) from None

    # image caches -------------------------------------------------------------------------

    def CreateImageCache(self, r: sdk.CreateImageCacheRequest) -> sdk.CreateImageCacheResponseBody:
        return self.region.create_image_cache(params.image_cache_spec(r), r.client_token)

    def UpdateImageCache(self, r: sdk.UpdateImageCacheRequest) -> sdk.UpdateImageCacheResponseBody:
        return self.region.update_image_cache(params.cache_update(r))

    def DeleteImageCache(self, r: sdk.DeleteImageCacheRequest) -> sdk.DeleteImageCacheResponseBody:
        return self.region.delete_image_cache(r.image_cache_id)

    def DescribeImageCaches(
        self, r: sdk.DescribeImageCachesRequest
    ) -> sdk.DescribeImageCachesResponseBody:
        which = params.cache_filter(r)
        page = params.page(r.limit, r.next_token, params.CACHE_PAGE)
        return self.region.describe_image_caches(which, page)

    def ListUsage(self, r: sdk.ListUsageRequest) -> sdk.ListUsageResponseBody:
        return self.region.list_usage()

    # container groups ---------------------------------------------------------------------

    def CreateContainerGroup(
        self, r: sdk.CreateContainerGroupRequest
    ) -> sdk.CreateContainerGroupResponseBody:
        return self.region.create_container_group(params.new_group(r), r.client_token)

    def DescribeContainerGroups(
        self, r: sdk.DescribeContainerGroupsRequest
    ) -> sdk.DescribeContainerGroupsResponseBody:
        ids = params.id_set(r.container_group_ids, "ContainerGroupIds", 20)
        which = params.GroupFilter(ids, r.container_group_name, r.status)
        page = params.page(r.limit, r.next_token, params.GROUP_PAGE)
        return self.region.describe_container_groups(which, page)

    def DescribeContainerGroupEvents(
        self, r: sdk.DescribeContainerGroupEventsRequest
    ) -> sdk.DescribeContainerGroupEventsResponseBody:
        which = params.GroupFilter(params.id_set(r.container_group_ids, "ContainerGroupIds", 20))
        params.limit(r.limit, params.GROUP_PAGE[1])  # checked as documented; every group shown
        return self.region.describe_container_group_events(which, r.event_source)

    def DeleteContainerGroup(
        self, r: sdk.DeleteContainerGroupRequest
    ) -> sdk.DeleteContainerGroupResponseBody:
        return self.region.delete_container_group(r.container_group_id)
