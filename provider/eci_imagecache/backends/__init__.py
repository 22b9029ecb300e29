"""Backends: one interface (``base.Backend``), a local and an Alibaba Cloud implementation."""
