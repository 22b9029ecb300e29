"""OCI Distribution client: manifests, platform selection, verified blobs, auth."""

from .client import (
    AuthenticationError,
    Credentials,
    DigestMismatch,
    ImageNotFound,
    Limits,
    MalformedManifest,
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
)

__all__ = [
    "AuthenticationError",
    "Credentials",
    "DigestMismatch",
    "ImageNotFound",
    "Limits",
    "MalformedManifest",
    "RegistryClient",
    "RegistryError",
    "RegistryUnavailable",
]
