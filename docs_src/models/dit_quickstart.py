"""First-Block-Cache on a Flux pipeline with cachekit: one line, then the hit map."""

from typing import Any

import cachekit

FIRST_BLOCK_CACHE = {"policy": {"kind": "similarity", "probe": "entry_residual", "threshold": 0.1}}


def generate(pipe: Any, **call: Any) -> Any:
    """One cached generation: every block after the first reused while the first block's
    residual drifts less than 10% (accumulated) since the last refresh."""
    with cachekit.cached(pipe, FIRST_BLOCK_CACHE) as handle:
        images = pipe(**call).images
    print(handle.stats.hit_map())
    return images


if __name__ == "__main__":
    import torch
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained("black-forest-labs/FLUX.1-dev", torch_dtype=torch.bfloat16).to("cuda")
    generate(pipe, prompt="a cat holding a sign that says hello", num_inference_steps=28)[0].save("cat.png")
