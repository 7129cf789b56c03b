"""The local stack: provisioning, configuring, supervising and bootstrapping every server."""
