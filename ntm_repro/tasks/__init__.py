"""Layer 3: one module per task; pure torch episode generators, no Lightning."""
