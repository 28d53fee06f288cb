"""Files: atomic writes, safetensors tensors, checkpoints and run folders."""
