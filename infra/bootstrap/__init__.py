"""The one-time account bootstrap (`bootstrap/`): what CI needs before any stack exists."""
