"""The mlstack program: read the stack's config, build the components, export what operators need."""

import pulumi

from infra.aws_provider import create_aws_provider
from infra.config import load_stack_config
from infra.network.vpc import Network
from infra.security.security_groups import SecurityGroups

env = load_stack_config()
aws_provider = create_aws_provider(env)
with_aws = pulumi.ResourceOptions(providers=[aws_provider])

network = Network("network", env, opts=with_aws)
security_groups = SecurityGroups("security", env, network, opts=with_aws)

pulumi.export("environment", env.name)
pulumi.export("region", env.region)
pulumi.export("availabilityZones", network.availability_zones)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("publicSubnetIds", network.public_subnet_ids)
pulumi.export("privateSubnetIds", network.private_subnet_ids)
pulumi.export("loadBalancerSecurityGroupId", security_groups.load_balancer_group_id)
pulumi.export("workloadSecurityGroupId", security_groups.workload_group_id)
