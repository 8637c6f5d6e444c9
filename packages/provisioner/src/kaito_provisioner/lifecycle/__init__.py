"""Karpenter's NodeClaim lifecycle as small reconcilers: launch, registration, initialization, liveness,
termination, and garbage collection. Each module pairs a pure decision function with a thin apply step."""
