"""Interoperability: models in and out of other tools (Hugging Face `transformers` weights, ONNX).

Sits above the model layer and below data: it converts models, and knows nothing of tasks."""
