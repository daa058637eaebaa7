"""mlstack: the Pulumi program and its components."""
