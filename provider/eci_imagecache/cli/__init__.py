"""The ``eci-imagecache`` command."""
