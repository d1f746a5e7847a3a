"""The ground every wing may use, and which imports no wing: the one error type, atomic file
writes, the emotion labels, progress bars, metrics."""
