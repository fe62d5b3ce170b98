"""DeepCache on a Stable Diffusion pipeline with cachekit: one line, then the hit map."""

from typing import Any

import cachekit


def generate(pipe: Any, **call: Any) -> Any:
    """One cached generation: branch 0 (the default) refreshed every 3 steps, as DeepCache does."""
    with cachekit.cached(pipe, {"policy": {"kind": "uniform", "interval": 3}}) as handle:
        images = pipe(**call).images
    print(handle.stats.hit_map())
    return images


if __name__ == "__main__":
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")
    generate(pipe, prompt="an astronaut riding a horse", num_inference_steps=50)[0].save("astronaut.png")
