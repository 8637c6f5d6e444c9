"""Local dev cluster."""
