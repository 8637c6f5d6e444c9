"""The embedded default: execute a Workspace's plan on a local Ray (`kaito-workspace run --local`).

The same executor runs planned tuning and serving steps for the dev cluster's KubeRay stand-in.
"""
