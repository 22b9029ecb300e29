"""eci-imagecache: Pulumi dynamic providers for Alibaba Cloud ECI image caches."""

__version__ = "0.1.0"
