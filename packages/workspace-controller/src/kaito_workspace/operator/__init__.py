"""The kopf operator for Workspaces: thin handlers over `Reconciler` (observe, plan, apply, status)."""
