"""Stable Audio with cachekit: self-attention every 2 steps, cross attention every 4."""

from typing import Any

import cachekit

CONFIG = {
    "regions": ["spatial_attn", "cross_attn"],
    "region_policies": {
        "spatial_attn": {"kind": "uniform", "interval": 2},
        "cross_attn": {"kind": "uniform", "interval": 4},
    },
}


def generate(pipe: Any, **call: Any) -> Any:
    """One cached generation: the audio, and the hit map printed."""
    with cachekit.cached(pipe, CONFIG) as handle:
        audio = pipe(**call).audios
    print(handle.stats.hit_map())
    return audio


if __name__ == "__main__":
    import soundfile
    import torch
    from diffusers import StableAudioPipeline

    pipe = StableAudioPipeline.from_pretrained("stabilityai/stable-audio-open-1.0", torch_dtype=torch.float16).to(
        "cuda"
    )
    audio = generate(pipe, prompt="a calm piano melody", audio_end_in_s=10.0, num_inference_steps=100)
    soundfile.write("piano.wav", audio[0].T.float().cpu().numpy(), pipe.vae.sampling_rate)
