"""Data: task cards and the registry, tasks, datasets and collation."""
