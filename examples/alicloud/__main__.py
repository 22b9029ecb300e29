"""The quickstart on Alibaba Cloud: a VPC, a vSwitch and a security group from pulumi-alicloud,
one image cache built in that vSwitch, and container groups that use it.

Needs ``eci:region`` (and ``alicloud:region``), credentials in ALIBABA_CLOUD_ACCESS_KEY_ID /
ALIBABA_CLOUD_ACCESS_KEY_SECRET (or an Alibaba Cloud CLI profile), and ``pip install
'eci-imagecache[alicloud]'``. Tested here under Pulumi's mocks (tests/unit/test_examples.py).
"""

import pulumi
import pulumi_alicloud as alicloud

from eci_imagecache.components import CachedContainerGroups, CachedContainerGroupsArgs
from eci_imagecache.dynamic import ContainerArgs

config = pulumi.Config()
zone = config.get("zone") or "cn-hangzhou-k"
images = config.get_object("images") or [
    "registry.cn-hangzhou.aliyuncs.com/eci_open/nginx:1.25",
    "registry.cn-hangzhou.aliyuncs.com/eci_open/redis:7",
]

vpc = alicloud.vpc.Network("eci-vpc", vpc_name="eci-imagecache", cidr_block="10.20.0.0/16")
vswitch = alicloud.vpc.Switch(
    "eci-vswitch",
    vpc_id=vpc.id,
    zone_id=zone,
    cidr_block="10.20.1.0/24",
    vswitch_name="eci-imagecache",
)
security_group = alicloud.ecs.SecurityGroup(
    "eci-sg", vpc_id=vpc.id, security_group_name="eci-imagecache"
)

app = CachedContainerGroups(
    "app",
    CachedContainerGroupsArgs(
        groups={
            "web": [ContainerArgs(name="web", image=images[0], ports=[80], cpu=1, memory_gib=2)],
            "redis": [ContainerArgs(name="redis", image=images[1], ports=[6379])],
        },
        size_gib=20,
        retention_days=30,
        eviction="LRU",
        instant=True,
        vswitch_id=vswitch.id,
        security_group_id=security_group.id,
        tags={"project": "eci-imagecache"},
    ),
)

pulumi.export("cache_id", app.cache.id)
pulumi.export("web_group", app.groups["web"].group_id)
pulumi.export("web_match", app.groups["web"].match_degree)
