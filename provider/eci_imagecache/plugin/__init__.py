"""The resources as a Pulumi resource provider plugin, ``pulumi-resource-eci-imagecache``.

YAML, Go, TypeScript programs and ``pulumi import`` reach ``ImageCache``, ``ContainerGroup``
and ``CachedContainerGroups`` through it. It is the second face of the same hooks the dynamic
providers serve (``dynamic/*_provider``): it only translates between the plugin protocol
(camelCase properties, typed values, secrets) and the hooks' snake_case dicts.

- ``schema``: the package schema, built from the Args classes, their docstrings and the
  engine's models;
- ``values``: property values to and from the hooks' dicts, and shape checks from the schema;
- ``provider``: the gRPC provider (check, diff, create, read, update, delete, construct);
- ``main``: the console script the Pulumi CLI runs.
"""
