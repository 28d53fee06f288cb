"""Training: losses, metrics, the trainer and its plots."""
