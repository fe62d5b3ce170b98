"""Wan 2.2's two experts, each with its own policy; the hit map shows the switch."""

from typing import Any

import cachekit

CONFIG = {
    "policy": {"kind": "uniform", "interval": 2},  # the high-noise expert: the layout still forms
    "denoiser_policies": {"transformer_2": {"kind": "uniform", "interval": 3}},  # the low-noise expert
}


def generate(pipe: Any, **call: Any) -> Any:
    """One cached generation: each expert's default block range at its own interval."""
    with cachekit.cached(pipe, CONFIG) as handle:
        frames = pipe(**call).frames
    print(handle.stats.hit_map())
    return frames


if __name__ == "__main__":
    import torch
    from diffusers import WanPipeline
    from diffusers.utils import export_to_video

    pipe = WanPipeline.from_pretrained("Wan-AI/Wan2.2-T2V-A14B-Diffusers", torch_dtype=torch.bfloat16).to("cuda")
    frames = generate(pipe, prompt="a cat surfing a wave at sunset", num_frames=81, num_inference_steps=40)
    export_to_video(frames[0], "cat.mp4", fps=16)
