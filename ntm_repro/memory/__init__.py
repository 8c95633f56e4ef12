"""Layer 1: pure tensor functions and small modules for NTM memory (no tasks, no config)."""
