"""The network: VPC, subnets, gateways, routes, flow logs, endpoints."""
