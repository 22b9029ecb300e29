"""The Alibaba Cloud backend, on the official ECI SDK (``alibabacloud_eci20180808``)."""

from .backend import AliCloudBackend

__all__ = ["AliCloudBackend"]
