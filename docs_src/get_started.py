import torch
from diffusers import DiffusionPipeline

import cachekit

pipe = DiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5", torch_dtype=torch.float16)
pipe.to("cuda")

handle = cachekit.enable(pipe, {"policy": {"kind": "uniform", "interval": 3}})
image = pipe("a photo of an astronaut riding a horse on mars", num_inference_steps=50).images[0]
print(handle.stats.hit_map())
handle.disable()  # the pipeline is back as it was, bit for bit
image.save("astronaut.png")
