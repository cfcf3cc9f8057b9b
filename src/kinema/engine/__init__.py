"""The engine: torch and diffusers only. The pipelines and the model runner, the speed features,
parallel attention across ranks, random-weight and tiny models. Nothing server-side imports it
at module level: a worker loads it when it loads its model, so the API process never loads torch.
"""
