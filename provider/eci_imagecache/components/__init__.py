"""Reusable Pulumi components built from the dynamic resources."""

from .cached_groups import CachedContainerGroups, CachedContainerGroupsArgs

__all__ = ["CachedContainerGroups", "CachedContainerGroupsArgs"]
