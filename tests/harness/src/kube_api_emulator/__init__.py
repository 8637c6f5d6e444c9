"""Kubernetes API emulator for tests: an in-memory API server that kopf, kubectl and the official
clients use unchanged. See tests/harness/README.md for what it implements and what it does not."""

from .cluster import Cluster, WriteOptions
from .errors import ApiError
from .kubeconfig import kubeconfig_dict, write_kubeconfig
from .server import KubeApiEmulator

__all__ = ["ApiError", "Cluster", "KubeApiEmulator", "WriteOptions", "kubeconfig_dict", "write_kubeconfig"]
