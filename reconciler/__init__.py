"""hotswap control plane: desired state in, idempotent steps out, every transition journaled."""
