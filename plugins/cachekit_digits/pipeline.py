"""``DigitsDiTPipeline``: class-conditional sampling in pixel space with a ``DiTTransformer2DModel``.

diffusers' ``DiTPipeline`` decodes latents with a VAE and hard-codes ImageNet's null class
(1000); the shipped digits DiT works on pixels with ten classes and a null class 10, so it
gets this small pipeline. It is an ordinary ``DiffusionPipeline`` (``transformer`` and
``scheduler`` components) and loads with ``from_pretrained`` like any other. Importing
this module imports diffusers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from cachekit_digits.architectures import NULL_CLASS


class DigitsDiTPipeline(DiffusionPipeline):
    """Sample digits of given classes with classifier-free guidance (batched cond + uncond pass)."""

    model_cpu_offload_seq = "transformer"

    def __init__(self, transformer, scheduler):
        super().__init__()
        self.register_modules(transformer=transformer, scheduler=scheduler)

    @torch.no_grad()
    def __call__(
        self,
        class_labels: Sequence[int],
        guidance_scale: float = 2.0,
        generator: torch.Generator | None = None,
        num_inference_steps: int = 50,
        output_type: str = "np",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Generate one image per entry of ``class_labels`` (digits 0-9).

        ``guidance_scale`` above 1 runs the conditional and the unconditional (null class)
        branch as one batch of twice the size; ``output_type`` is ``"np"`` (``N, H, W, 1``
        in ``[0, 1]``), ``"pt"`` (``N, 1, H, W``) or ``"pil"``.
        """
        config = self.transformer.config
        labels = torch.as_tensor(list(class_labels), dtype=torch.long, device=self._execution_device)
        if labels.numel() == 0 or int(labels.min()) < 0 or int(labels.max()) >= NULL_CLASS:
            raise ValueError(
                f"class_labels must be a non-empty list of digits 0-{NULL_CLASS - 1}, got {class_labels!r}"
            )
        shape = (len(labels), config.in_channels, config.sample_size, config.sample_size)
        image = randn_tensor(shape, generator=generator, device=self._execution_device, dtype=self.transformer.dtype)
        guided = guidance_scale > 1.0
        if guided:
            labels = torch.cat([labels, torch.full_like(labels, NULL_CLASS)])
        self.scheduler.set_timesteps(num_inference_steps)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = torch.cat([image, image]) if guided else image
            timestep = t.expand(model_input.shape[0]).to(model_input.device)
            noise = self.transformer(model_input, timestep=timestep, class_labels=labels).sample
            if guided:
                cond, uncond = noise.chunk(2)
                noise = uncond + guidance_scale * (cond - uncond)
            image = self.scheduler.step(noise, t, image, generator=generator).prev_sample
        image = (image / 2 + 0.5).clamp(0, 1)
        if output_type != "pt":
            image = image.cpu().permute(0, 2, 3, 1).numpy()
            if output_type == "pil":
                image = self.numpy_to_pil(image)
        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)
