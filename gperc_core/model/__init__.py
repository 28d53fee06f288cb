"""The model: attention blocks, position encodings, sentinels, the Perceiver and multimodal fusion. Knows nothing of parallelism."""
