"""Security groups and, later, IAM and KMS."""
