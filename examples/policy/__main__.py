"""The eci-imagecache policy pack (see the README's policy section for how to run it)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eci_policy import POLICIES
from pulumi_policy import PolicyPack

PolicyPack(name="eci-imagecache", policies=POLICIES)
