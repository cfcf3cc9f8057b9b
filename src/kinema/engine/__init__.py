"""The engine: model registry and parameter plan (torch-free), pipelines and tiny models (torch).

Only `pipelines` and `tiny` import torch/diffusers; import them lazily so that the API process,
which uses the registry to validate model ids, never loads torch.
"""
