"""Layer 4: Lightning module and data, the Graves RMSProp optimizer, metrics, callbacks."""
