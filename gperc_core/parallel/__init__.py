"""Parallelism: process groups and launch, and the pipeline-parallel and data-parallel strategies."""
