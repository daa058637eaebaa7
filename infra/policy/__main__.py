"""`pulumi preview --policy-pack infra/policy`: mlstack's rules, enforced by Pulumi CrossGuard."""

from pack import policies
from pulumi_policy import PolicyPack

PolicyPack(name="mlstack", policies=policies())
