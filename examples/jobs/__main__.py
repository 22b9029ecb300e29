"""Batch jobs on the embedded local backend: container groups that run to completion.

Two groups with restart policy ``Never`` run the demo registry's job images (built from busybox):
one ends ``Succeeded`` with exit code 0, the other ``Failed`` with the exit code it chose
(``failCode``, 3 unless set). As with pulumi-alicloud, a create waits for its group: the job that
succeeds is created; the one that fails fails ``pulumi up`` with one line (the group, the
reason, the exit code, the last lines of its log) and stays in the stack, failed, until
``pulumi destroy`` removes it or a changed program replaces it. The groups' outputs (in
``pulumi stack export``) show each container's state, exit code and the measured phases.
"""

import pulumi

from eci_imagecache.dynamic import ContainerArgs, ContainerGroup, ContainerGroupArgs

config = pulumi.Config()
registry = config.get("registry") or "127.0.0.1:5055"


def job(name: str, image: str, env: dict[str, str]) -> ContainerGroup:
    return ContainerGroup(
        name,
        ContainerGroupArgs(
            containers=[ContainerArgs(name="job", image=f"{registry}/{image}", env=env)],
            restart_policy="Never",
            cache="auto-create",
        ),
    )


ok = job("nightly-report", "demo/job-ok:1.0", {"MESSAGE": "report written"})
failing = job(
    "nightly-import", "demo/job-fail:1.0", {"EXIT_CODE": str(config.get_int("failCode") or 3)}
)

for name, group in (("ok", ok), ("failing", failing)):
    pulumi.export(f"{name}_id", group.group_id)
    pulumi.export(f"{name}_status", group.status)
    pulumi.export(f"{name}_containers", group.containers_state)
    pulumi.export(f"{name}_phases", group.phases)
