"""The official SDK reads what really ran: the emulator answers DescribeContainerGroups with each
container's current state, exit code and restarts, as the local backend's runtime saw them."""

import time

from alibabacloud_eci20180808 import models as sdk

from eci_imagecache.runtime import host

from ..conformance.test_sdk_script import eci  # noqa: F401 - the fixture
from ..conftest import Registry, missing
from .conftest import REGION


def test_a_failed_job_reads_terminated_with_its_exit_code(eci, registry: Registry):  # noqa: F811
    if host.unavailable():
        missing(f"containers cannot run here: {host.unavailable()}")
    image = registry.runnable.references(registry.host)["job_fail"]
    created = eci.create_container_group(
        sdk.CreateContainerGroupRequest(
            region_id=REGION,
            container_group_name="nightly-import",
            restart_policy="Never",
            container=[
                sdk.CreateContainerGroupRequestContainer(
                    name="job",
                    image=image,
                    environment_var=[
                        sdk.CreateContainerGroupRequestContainerEnvironmentVar(
                            key="EXIT_CODE", value="9"
                        )
                    ],
                )
            ],
        )
    ).body
    request = sdk.DescribeContainerGroupsRequest(
        region_id=REGION, container_group_ids=f'["{created.container_group_id}"]'
    )
    deadline = time.monotonic() + 30
    while (group := eci.describe_container_groups(request).body.container_groups[0]).status in (
        "Pending",
        "Running",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert group.status == "Failed"
    [container] = group.containers
    state = container.current_state
    assert (container.name, state.state, state.exit_code, container.restart_count) == (
        "job",
        "Terminated",
        9,
        0,
    )
    assert state.start_time and state.finish_time
    eci.delete_container_group(
        sdk.DeleteContainerGroupRequest(
            region_id=REGION, container_group_id=created.container_group_id
        )
    )
