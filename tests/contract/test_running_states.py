"""The official SDK reads what really ran: the emulator answers DescribeContainerGroups with each
container's current state, exit code and restarts, as the local backend's runtime saw them."""

import ipaddress
import json
import time

from alibabacloud_eci20180808 import models as sdk
from alibabacloud_eci20180808.client import Client
from alibabacloud_tea_openapi import models as openapi

from eci_imagecache.backends.emulator.server import EmulatorServer
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ContainerGroupSpec
from eci_imagecache.runtime import host
from eci_imagecache.testing.registry import free_port

from ..backend.conftest import FastRegistry
from ..conformance.test_sdk_script import eci  # noqa: F401 - the fixture
from ..conftest import Registry, missing
from .conftest import ACCESS_KEY, REGION, cloud_backend, credential


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


def test_the_alicloud_backend_reads_each_containers_state_as_the_local_backend_shows_it(
    tmp_path, registry: Registry
) -> None:
    """The alicloud backend on the official SDK, against the emulator serving a local backend
    whose containers really ran: each container's state, exit code, restarts, times and reason
    read back from DescribeContainerGroups equal what the local backend shows."""
    if host.unavailable():
        missing(f"containers cannot run here: {host.unavailable()}")
    local = LocalBackend(data_dir=tmp_path / "cloud", region=REGION, registry_factory=FastRegistry)
    images = registry.runnable.references(registry.host)
    with EmulatorServer(local, dict([ACCESS_KEY])) as server:
        cloud = cloud_backend(server.endpoint)
        made = cloud.create_container_group(
            ContainerGroupSpec(
                name="nightly-import",
                restart_policy="Never",
                cache="none",
                init_containers=[{"name": "prepare", "image": images["job_ok"]}],
                containers=[
                    {"name": "job", "image": images["job_fail"], "env": {"EXIT_CODE": "9"}}
                ],
            )
        )
        deadline = time.monotonic() + 30
        while (truth := local.get_container_group(made.id)).status.value in ("Pending", "Running"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        read = cloud.get_container_group(made.id)
        [listed] = [g for g in cloud.list_container_groups() if g.id == made.id]
        cloud.delete_container_group(made.id)

    def seconds(c):  # the API's times are whole seconds
        return c.model_copy(
            update={
                "started_at": c.started_at and c.started_at.replace(microsecond=0),
                "finished_at": c.finished_at and c.finished_at.replace(microsecond=0),
            }
        )

    assert [(c.name, c.init, c.state, c.exit_code) for c in read.containers] == [
        ("prepare", True, "Terminated", 0),
        ("job", False, "Terminated", 9),
    ]
    assert [seconds(c) for c in read.containers] == [seconds(c) for c in truth.containers]
    assert listed.containers == read.containers
    assert read.status == truth.status


def test_the_alicloud_backend_reads_the_address_the_emulator_gave_and_why_a_group_failed(
    tmp_path, registry: Registry
) -> None:
    """A web server with an EIP, running, is at the public IP the emulator gave it with its
    port; a failed job is at its private IP and says which container failed with what code.
    The addresses are read with the official SDK from the emulator's answer."""
    if host.unavailable():
        missing(f"containers cannot run here: {host.unavailable()}")
    local = LocalBackend(data_dir=tmp_path / "cloud", region=REGION, registry_factory=FastRegistry)
    images = registry.runnable.references(registry.host)
    port = free_port()
    with EmulatorServer(local, dict([ACCESS_KEY])) as server:
        cloud = cloud_backend(server.endpoint)
        scheme, _, endpoint = server.endpoint.partition("://")
        eci = Client(
            openapi.Config(
                credential=credential(*ACCESS_KEY),
                region_id=REGION,
                endpoint=endpoint,
                protocol=scheme,
            )
        )
        web = cloud.create_container_group(
            ContainerGroupSpec(
                name="web",
                cache="none",
                auto_create_eip=True,
                containers=[
                    {
                        "name": "httpd",
                        "image": images["httpd"],
                        "env": {"PORT": str(port)},
                        "ports": [port],
                    }
                ],
            )
        )
        job = cloud.create_container_group(
            ContainerGroupSpec(
                name="nightly",
                cache="none",
                restart_policy="Never",
                containers=[
                    {"name": "job", "image": images["job_fail"], "env": {"EXIT_CODE": "9"}}
                ],
            )
        )
        deadline = time.monotonic() + 30
        while (ran := cloud.get_container_group(web.id)).status.value != "Running" or (
            failed := cloud.get_container_group(job.id)
        ).status.value != "Failed":
            assert time.monotonic() < deadline, (ran.status, ran.status_reason)
            time.sleep(0.05)
        described = {
            g.container_group_id: g
            for g in eci.describe_container_groups(
                sdk.DescribeContainerGroupsRequest(
                    region_id=REGION, container_group_ids=json.dumps([web.id, job.id])
                )
            ).body.container_groups
        }
        cloud.delete_container_group(web.id)
        cloud.delete_container_group(job.id)

    public, private = described[web.id].internet_ip, described[job.id].intranet_ip
    assert ipaddress.ip_address(public) and ipaddress.ip_address(private)
    assert described[job.id].internet_ip == ""  # no EIP asked for
    assert described[web.id].intranet_ip != private  # each instance its own
    assert ran.address == f"{public}:{port}" and ran.status_reason == ""
    assert failed.address == private
    assert failed.status_reason.startswith("container job exited with code 9")
