"""Running container groups on this machine: unpacked layers, OCI bundles and a crun supervisor.

- ``layers.LayerStore``: each image layer unpacked once (safely, applying the OCI changeset rules)
  into a content-addressed, read-only directory in overlayfs format, shared by every cache and
  group that holds the layer.
- ``bundle``: an OCI runtime ``config.json`` from the image config and the container's settings.
- ``network``: each group its own network namespace (a loopback only) and its own address on
  the host's loopback, where its declared ports are published.
- ``supervisor.Runtime``: starts a group's containers with ``crun`` on overlay mounts of their
  layer directories (start-up is a mount: O(1) in image bytes), keeps their state in SQLite,
  applies the restart policy, keeps bounded logs, stops and cleans up, and reconciles with what
  is really running after a restart.
- ``forkserver``: one pre-imported process that forks each group's shim (a fork, not an
  interpreter's start), outliving the processes that ask it until it has been idle a while.

This package imports nothing else of the project (the shim process starts with it alone).
"""
