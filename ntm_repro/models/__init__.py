"""Layer 2: controllers, the NTM (one class for every memory topology), the LSTM baseline."""
