"""For development, tests, benchmarks and the demo, never used by the backends: a real registry
on loopback with generated images (``testing.registry``)."""
