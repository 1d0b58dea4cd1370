"""Model facts: what a model is made of, read from HF config.json, safetensors
headers or GGUF metadata, never from the weights themselves."""
