"""Reading what the API may send, built with the SDK's own response models (never our dicts)."""

import re

from alibabacloud_eci20180808 import models as sdk

from eci_imagecache.backends.alicloud import reading
from eci_imagecache.engine.models import CacheKind, CacheStatus, EvictionStrategy

from .sdk_shapes import shape

REGION = "cn-hangzhou"


def cache_item(**fields) -> dict:
    base = {
        "image_cache_id": "imc-2ze5hdcnngenmwc1jmwf",
        "image_cache_name": "web",
        "image_cache_size": 20,
        "images": ["registry.cn-hangzhou.aliyuncs.com/eci_open/nginx:1.15.10"],
        "status": "Ready",
        "creation_time": "2026-01-01T00:00:00Z",
        "snapshot_id": "s-2ze1example",
    }
    return sdk.DescribeImageCachesResponseBodyImageCaches(**{**base, **fields}).to_map()


def test_every_documented_status_is_read_and_an_unknown_one_is_not_failed() -> None:
    documented = {
        "Preparing": CacheStatus.CREATING,
        "Creating": CacheStatus.CREATING,
        "Ready": CacheStatus.READY,
        "Failed": CacheStatus.FAILED,
        "Updating": CacheStatus.UPDATING,
        "UpdateFailed": CacheStatus.UPDATE_FAILED,
    }
    # The list the SDK's docstring gives (DescribeImageCachesResponseBodyImageCaches.status).
    doc = shape(sdk.DescribeImageCachesResponseBodyImageCaches).docs["Status"]
    assert set(documented) == set(re.findall(r"\*\s+(\w+):", doc))
    for wire, status in documented.items():
        assert reading.cache_record(cache_item(status=wire), REGION).status == status
    odd = reading.cache_record(cache_item(status="Deleting"), REGION)
    assert odd.status == CacheStatus.UNKNOWN and not odd.usable


def test_lower_case_lru_fractional_progress_and_milliseconds() -> None:
    record = reading.cache_record(
        cache_item(
            elimination_strategy="lru",
            progress="37.5%",
            creation_time="2026-01-01T08:00:00.123+08:00",
            expire_date_time="2026-01-06T00:00:00.456Z",
            last_matched_time="2026-01-02T00:00:00.5Z",
        ),
        REGION,
    )
    assert record.eviction == EvictionStrategy.LRU and record.progress == 37
    assert record.created_at.isoformat() == "2026-01-01T00:00:00.123000+00:00"
    assert record.retention_days == 5 and record.last_used_at is not None


def test_one_unreadable_cache_does_not_hide_the_others() -> None:
    good = cache_item()
    no_id = cache_item(image_cache_id=None)
    bad_image = cache_item(image_cache_id="imc-other", images=["Not A Ref!!"])
    records = reading.cache_records([no_id, good, bad_image], REGION)
    assert [r.id for r in records] == ["imc-2ze5hdcnngenmwc1jmwf", "imc-other"]


def test_kind_is_not_read_from_the_name_alone() -> None:
    manual = reading.cache_record(
        cache_item(
            image_cache_name="auto-create-for-eci-mine",
            container_group_id="eci-buildinstance",
            expire_date_time="2026-01-04T00:00:00Z",
        ),
        REGION,
    )
    assert manual.kind == CacheKind.MANUAL and manual.retention_days == 3
    auto = reading.cache_record(
        cache_item(image_cache_name="auto-create-for-eci-x1", container_group_id="eci-x1"),
        REGION,
    )
    assert auto.kind == CacheKind.AUTO and auto.eviction == EvictionStrategy.LRU


def test_tags_and_resource_group_are_read_back() -> None:
    record = reading.cache_record(
        cache_item(
            tags=[sdk.DescribeImageCachesResponseBodyImageCachesTags(key="team", value="web")],
            resource_group_id="rg-aek2example",
        ),
        REGION,
    )
    assert record.tags == {"team": "web"} and record.resource_group_id == "rg-aek2example"


def test_usage_reads_the_documented_used_counts() -> None:
    body = sdk.ListUsageResponseBody(
        attributes={
            "MaxImageCacheCount": 50,
            "UsedImageCacheCount": 7,
            "MaxAutoImageCacheCount": 30,
            "UsedAutoImageCacheCount": 2,
        }
    )
    assert reading.usage_counts(body.attributes) == {
        "max_manual": 50,
        "max_auto": 30,
        "manual": 7,
        "auto": 2,
    }


def test_the_cache_hit_comes_from_the_documented_events() -> None:
    """Event texts as ECI documents them ("Custom events of ECI") and as pods show them."""
    Event = sdk.DescribeContainerGroupEventsResponseBodyDataEvents
    hit = Event(
        type="Normal",
        reason="SuccessfulHitImageCache",
        message="[eci.imagecache]Successfully hit image cache imc-2ze5hdcnngenmwc1jmwf, "
        "eci will be scheduled with this image cache.",
    ).to_map()
    assert reading.cache_decision([hit])["cache_id"] == "imc-2ze5hdcnngenmwc1jmwf"
    older = {**hit, "Message": "Successfully hit image cache imc-6weel91oaxj0az23sz6z."}
    assert reading.cache_decision([older])["cache_id"] == "imc-6weel91oaxj0az23sz6z"
    missed = Event(
        type="Warning", reason="ImageCacheMissed", message="[eci.imagecache]Missed image cache."
    )
    created = Event(
        type="Normal",
        reason="ImageCacheAutoCreated",
        message="[eci.imagecache]Image cache imc-2ze5hdcnngenmwc1jmwf is auto created",
    )
    decision = reading.cache_decision([missed.to_map(), created.to_map()])
    assert decision["auto_created_cache_id"] == "imc-2ze5hdcnngenmwc1jmwf"
    assert "cache_id" not in decision


def test_each_containers_state_exit_code_and_restarts_come_from_the_documented_fields() -> None:
    """A group as DescribeContainerGroups answers it, built with the SDK's response models."""
    m = sdk
    prefix = "DescribeContainerGroupsResponseBodyContainerGroups"
    Container, Init = getattr(m, f"{prefix}Containers"), getattr(m, f"{prefix}InitContainers")
    State, Previous = (
        getattr(m, f"{prefix}Containers{s}") for s in ("CurrentState", "PreviousState")
    )
    InitState = getattr(m, f"{prefix}InitContainersCurrentState")
    item = getattr(m, prefix)(
        container_group_id="eci-2zelg8vwnlzdhf8hv6ph",
        container_group_name="nightly",
        status="Running",
        creation_time="2026-01-01T00:00:00Z",
        init_containers=[
            Init(
                name="prepare",
                image="busybox:1.36",
                restart_count=0,
                current_state=InitState(
                    state="Terminated",
                    exit_code=0,
                    reason="Completed",
                    start_time="2026-01-01T00:00:01Z",
                    finish_time="2026-01-01T00:00:02Z",
                ),
            )
        ],
        containers=[
            # Running after two restarts (the API may send ExitCode 0 for a running one).
            Container(
                name="web",
                image="nginx:1.25",
                restart_count=2,
                current_state=State(
                    state="Running", exit_code=0, start_time="2026-01-01T00:01:00Z"
                ),
                previous_state=Previous(state="Terminated", exit_code=137, reason="OOMKilled"),
            ),
            Container(
                name="job",
                image="busybox:1.36",
                current_state=State(
                    state="terminated",
                    exit_code=7,
                    reason="Error",
                    message="exit status 7",
                    start_time="2026-01-01T00:00:03Z",
                    finish_time="2026-01-01T00:00:04.250Z",
                ),
            ),
            # Waiting to be restarted: the exit code is the previous run's.
            Container(
                name="retry",
                image="busybox:1.36",
                restart_count=1,
                current_state=State(state="Waiting", reason="CrashLoopBackOff"),
                previous_state=Previous(state="Terminated", exit_code=1),
            ),
            Container(name="new", image="busybox:1.36"),  # no state reported yet
            Container(
                name="odd", image="busybox:1.36", current_state=State(state="Crashing", exit_code=3)
            ),
            Container(
                name="killed",
                image="busybox:1.36",
                current_state=State(state="Terminated", exit_code=137, signal=9),
            ),
        ],
    ).to_map()
    record = reading.group_record(item, REGION)
    assert [(c.name, c.init, c.state, c.exit_code, c.restart_count) for c in record.containers] == [
        ("prepare", True, "Terminated", 0, 0),
        ("web", False, "Running", None, 2),
        ("job", False, "Terminated", 7, 0),
        ("retry", False, "Waiting", 1, 1),
        ("new", False, "Waiting", None, 0),
        ("odd", False, "Unknown", None, 0),
        ("killed", False, "Terminated", 137, 0),
    ]
    prepare, web, job, retry, *_, killed = record.containers
    assert (prepare.reason, job.reason, retry.reason) == (
        "Completed",
        "Error: exit status 7",
        "CrashLoopBackOff",
    )
    assert killed.reason == "killed by signal 9"
    assert job.started_at.isoformat() == "2026-01-01T00:00:03+00:00"
    assert job.finished_at.isoformat() == "2026-01-01T00:00:04.250000+00:00"
    assert web.started_at is not None and web.finished_at is None
    # The states read are the ones the reference lists, for containers and init containers.
    for cls in (State, InitState):
        doc = shape(cls).docs["State"]
        assert set(re.findall(r"\*\s+(\w+)", doc)) == set(reading.CONTAINER_STATES.values())
    # A state that is not an object is read as none (the group is not lost).
    odd = {**item, "Containers": [{**item["Containers"][0], "CurrentState": "Running"}]}
    assert reading.group_record(odd, REGION).containers[1].state == "Waiting"


def group_item(**fields) -> dict:
    """A DescribeContainerGroups entry as the SDK's response model writes it (``to_map``)."""
    prefix = "DescribeContainerGroupsResponseBodyContainerGroups"
    base = {
        "container_group_id": "eci-2zelg8vwnlzdhf8hv6ph",
        "container_group_name": "web",
        "status": "Running",
        "creation_time": "2026-01-01T00:00:00Z",
    }
    return getattr(sdk, prefix)(**{**base, **fields}).to_map()


def test_the_address_is_the_public_ip_with_an_eip_else_the_private_one() -> None:
    prefix = "DescribeContainerGroupsResponseBodyContainerGroupsContainers"
    Container, State, Port = (getattr(sdk, f"{prefix}{s}") for s in ("", "CurrentState", "Ports"))
    # The reference's words for the two fields the address is read from.
    docs = shape(sdk.DescribeContainerGroupsResponseBodyContainerGroups).docs
    assert "public IP" in docs["InternetIp"] and "private IP" in docs["IntranetIp"]
    running = Container(
        name="web",
        image="nginx:1.25",
        current_state=State(state="Running", start_time="2026-01-01T00:00:05Z"),
        ports=[Port(port=8443, protocol="TCP"), Port(port=80, protocol="TCP")],
    )
    with_eip = group_item(
        internet_ip="47.96.12.34", intranet_ip="192.168.1.20", containers=[running]
    )
    assert reading.group_record(with_eip, REGION).address == "47.96.12.34:80"
    private = group_item(internet_ip="", intranet_ip="192.168.1.20", containers=[running])
    assert reading.group_record(private, REGION).address == "192.168.1.20:80"
    # No port declared: the IP alone.
    bare = Container(name="job", image="busybox:1.36", current_state=State(state="Running"))
    assert (
        reading.group_record(
            group_item(intranet_ip="192.168.1.21", containers=[bare]), REGION
        ).address
        == "192.168.1.21"
    )
    # The instance has its IP from the start, but nothing answers before a container started.
    waiting = Container(name="web", image="nginx:1.25", current_state=State(state="Waiting"))
    pending = group_item(status="Pending", intranet_ip="192.168.1.22", containers=[waiting])
    assert reading.group_record(pending, REGION).address is None
    # No IP reported (a group that was never scheduled): no address, and no made-up one.
    assert reading.group_record(group_item(containers=[running]), REGION).address is None
    # A container that ended without starting (no StartTime: it could not run) never answered.
    never_ran = Container(
        name="web",
        image="nginx:1.25",
        current_state=State(state="Terminated", exit_code=128, reason="ContainerCannotRun"),
    )
    failed = group_item(status="Failed", intranet_ip="192.168.1.23", containers=[never_ran])
    assert reading.group_record(failed, REGION).address is None


def test_a_failed_group_says_why_from_its_containers_or_its_warning_events() -> None:
    prefix = "DescribeContainerGroupsResponseBodyContainerGroups"
    Container, Init = getattr(sdk, f"{prefix}Containers"), getattr(sdk, f"{prefix}InitContainers")
    State = getattr(sdk, f"{prefix}ContainersCurrentState")
    InitState = getattr(sdk, f"{prefix}InitContainersCurrentState")
    Event = getattr(sdk, f"{prefix}Events")
    missed = Event(
        type="Warning",
        reason="ImageCacheMissed",
        message="[eci.imagecache]Missed image cache.",
        last_timestamp="2026-01-01T00:00:09Z",
    )
    # A job that exited 7: its container says so (the cache miss, a Warning too, is not why).
    job = Container(
        name="job",
        image="busybox:1.36",
        current_state=State(state="Terminated", exit_code=7, reason="Error"),
    )
    failed = group_item(status="Failed", containers=[job], events=[missed])
    assert (
        reading.group_record(failed, REGION).status_reason
        == "container job exited with code 7 (Error)"
    )
    # An init container that failed comes first, as it ran first.
    init = Init(
        name="migrate",
        image="busybox:1.36",
        current_state=InitState(state="Terminated", exit_code=1, reason="Error", message="no db"),
    )
    both = group_item(status="Failed", init_containers=[init], containers=[job])
    assert reading.group_record(both, REGION).status_reason == (
        "init container migrate exited with code 1 (Error: no db)"
    )
    # Never scheduled: the newest Warning event (the vendor's "Custom events of ECI"), and the
    # status that Failed folds in leads.
    events = [
        Event(
            type="Warning",
            reason="StockExhaust",
            message="The stock of the specified zones will be used up.",
            last_timestamp="2026-01-01T00:00:01Z",
        ),
        Event(
            type="Warning",
            reason="NoStock",
            message="Create ECI failed because the specified instance is out of stock.",
            last_timestamp="2026-01-01T00:00:05Z",
        ),
        missed,
        Event(type="Normal", reason="Scheduled", last_timestamp="2026-01-01T00:00:10Z"),
    ]
    never = reading.group_record(group_item(status="ScheduleFailed", events=events), REGION)
    assert never.status.value == "Failed"
    assert never.status_reason == (
        "ScheduleFailed: NoStock: Create ECI failed because the specified instance is out of stock."
    )
    # Pending on an image that cannot be pulled: the waiting container's reason.
    pull = Container(
        name="web",
        image="nginx:1.25",
        current_state=State(state="Waiting", reason="ImagePullBackOff", message="not found"),
    )
    pending = reading.group_record(group_item(status="Pending", containers=[pull]), REGION)
    assert pending.status_reason == "container web is waiting: ImagePullBackOff: not found"
    # Failed with nothing said: says so; the lifecycle page's StartingFailed is a failure.
    assert reading.group_record(group_item(status="Failed"), REGION).status_reason
    starting = reading.group_record(group_item(status="StartingFailed"), REGION)
    assert (starting.status.value, starting.status_reason) == (
        "Failed",
        "the instance is StartingFailed",
    )
    # Running or done: no reason, whatever old warnings say.
    for status in ("Running", "Succeeded"):
        ok = group_item(status=status, containers=[job], events=events)
        assert reading.group_record(ok, REGION).status_reason == ""


def test_a_group_reads_back_as_declared_from_the_documented_fields() -> None:
    """What ``pulumi import`` declares a group with: its containers, restart policy, resources,
    storage and the cache it uses, from a DescribeContainerGroups body built with the SDK's
    models."""
    m = sdk
    prefix = "DescribeContainerGroupsResponseBodyContainerGroups"
    Container = getattr(m, f"{prefix}Containers")
    Env, Port = (getattr(m, f"{prefix}Containers{s}") for s in ("EnvironmentVars", "Ports"))
    item = getattr(m, prefix)(
        container_group_id="eci-2zelg8vwnlzdhf8hv6ph",
        container_group_name="api",
        status="Running",
        creation_time="2026-01-01T00:00:00Z",
        restart_policy="OnFailure",
        cpu=2.0,
        memory=4.0,
        ephemeral_storage=10,
        v_switch_id="vsw-1",
        security_group_id="sg-1",
        zone_id="cn-hangzhou-h",
        containers=[
            Container(
                name="api",
                image="registry.example.com/team/api:1.2",
                image_pull_policy="Always",
                commands=["/app/api"],
                args=["--port", "8080"],
                environment_vars=[Env(key="MODE", value="prod"), Env(key="EMPTY")],
                ports=[Port(port=8080, protocol="TCP")],
                working_dir="/app",
                cpu=1.0,
                memory=2.0,
            )
        ],
        events=[
            getattr(m, f"{prefix}Events")(
                type="Normal",
                reason="SuccessfulHitImageCache",
                message="[eci.imagecache]Successfully hit image cache imc-2ze5hdcnngenmwc1jmwf, "
                "eci will be scheduled with this image cache.",
            )
        ],
    ).to_map()
    assert reading.group_record(item, REGION).declared == {
        "name": "api",
        "containers": [
            {
                "name": "api",
                "image": "registry.example.com/team/api:1.2",
                "image_pull_policy": "Always",
                "command": ["/app/api"],
                "args": ["--port", "8080"],
                "env": {"MODE": "prod", "EMPTY": ""},
                "ports": [8080],
                "cpu": 1.0,
                "memory_gib": 2.0,
                "working_dir": "/app",
            }
        ],
        "extra_ephemeral_storage_gib": 10,
        "cache": "explicit",
        "cache_id": "imc-2ze5hdcnngenmwc1jmwf",
        "cpu": 2.0,
        "memory_gib": 4.0,
        "restart_policy": "OnFailure",
        "vswitch_id": "vsw-1",
        "security_group_id": "sg-1",
        "zone_id": "cn-hangzhou-h",
    }
    # What makes no valid declaration (here a name outside ECI's rule) gives none.
    unreadable = {**item, "ContainerGroupName": "API"}
    assert reading.group_record(unreadable, REGION).declared is None
