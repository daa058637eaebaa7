"""Monthly cost of a stack, estimated from the preview's resources and a committed price snapshot."""
