"""Kubernetes API emulator for tests."""
