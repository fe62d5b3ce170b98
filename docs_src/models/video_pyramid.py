"""PAB's pyramid with cachekit: each attention kind of a video model reused for its own span."""

from typing import Any

import cachekit

PYRAMID = {
    "regions": ["spatial_attn", "temporal_attn", "cross_attn"],
    "region_policies": {
        "spatial_attn": {"kind": "uniform", "interval": 2},
        "temporal_attn": {"kind": "uniform", "interval": 4},
        "cross_attn": {"kind": "uniform", "interval": 6},
    },
}


def generate(pipe: Any, **call: Any) -> Any:
    """One cached generation of a video UNet pipeline (text-to-video, AnimateDiff, SVD)."""
    with cachekit.cached(pipe, PYRAMID) as handle:
        frames = pipe(**call).frames
    print(handle.stats.hit_map())
    return frames


if __name__ == "__main__":
    import torch
    from diffusers import TextToVideoSDPipeline
    from diffusers.utils import export_to_video

    pipe = TextToVideoSDPipeline.from_pretrained("ali-vilab/text-to-video-ms-1.7b", torch_dtype=torch.float16).to(
        "cuda"
    )
    frames = generate(pipe, prompt="a panda playing guitar", num_inference_steps=25)
    export_to_video(frames[0], "panda.mp4")
