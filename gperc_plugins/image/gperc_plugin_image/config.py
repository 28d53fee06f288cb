"""`ImageConfig`: gperc's image config, with gperc's signature, on gperc-core's `PerceiverConfig`."""

from __future__ import annotations

from typing import Any, Sequence

from gperc_core import ConfigError, PerceiverConfig, TaskError

from . import PLUGIN

TASKS = ("classification", "segmentation")


class ImageConfig(PerceiverConfig):
    """A `PerceiverConfig` computed from an image shape, as in gperc.

    ``ImageConfig(image_shape, latent_len, latent_dim, n_classes, decoder_reduction="mean",
    ffw_ratio=1.0, task="classification", **kwargs)`` (gperc's signature):

    - ``image_shape`` is ``[H, W, C]``; ``input_len = H * W``.
    - ``input_dim``: by default ``C`` (gperc's arithmetic: the model reads ``[b, H*W, C]`` and adds
      its own position encoding, trainable as in gperc). With ``num_bands=K`` it matches this
      plugin's input arrays instead: ``C`` channels per pixel and ``input_pos_enc="fourier"`` over
      ``input_pos_shape=[H, W]`` with ``fourier_num_bands=K`` (the model adds the ``2 * (2K + 1)``
      Fourier channels); with ``representation="patches"`` and ``patch_size=p`` it is ``p*p*C`` over
      the ``[ceil(H/p), ceil(W/p)]`` patch grid.
    - ``output_dim = latent_dim``; ``ffw_latent = int(ffw_ratio * latent_dim)``,
      ``ffw_output = int(ffw_ratio * output_dim)``; ``decoder_residual = False``.
    - ``task="classification"``: one output query, reduced by ``decoder_reduction``.
      ``task="segmentation"``: ``output_len = H * W`` queries (one per pixel) and
      ``decoder_reduction = None`` (gperc kept ``"mean"``, which averaged the pixels away);
      ``n_classes`` counts the background class.

    Any other keyword (a `PerceiverConfig` field or an extra) is applied last and overrides the
    computed value, so ``ImageConfig.from_json(config.to_json())`` round-trips.
    """

    extra_fields = {"image_shape": None, "task": "classification", "num_bands": None, "representation": "pixels",
                    "patch_size": 4}

    def __init__(self, image_shape: Sequence[int], latent_len: int, latent_dim: int, n_classes: int,
                 decoder_reduction: str | None = "mean", ffw_ratio: float = 1.0, task: str = "classification",
                 **kwargs: Any) -> None:
        shape = list(image_shape) if isinstance(image_shape, (list, tuple)) else None
        if shape is None or len(shape) != 3 or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
            raise ConfigError(f"{PLUGIN}: image_shape: expected [H, W, C] of positive integers, got {image_shape!r}")
        if task not in TASKS:
            raise ConfigError(f"{PLUGIN}: task: expected one of {TASKS}, got {task!r}")
        if not isinstance(ffw_ratio, (int, float)) or isinstance(ffw_ratio, bool) or ffw_ratio <= 0:
            raise ConfigError(f"{PLUGIN}: ffw_ratio: expected a positive number, got {ffw_ratio!r}")
        if not isinstance(latent_dim, int) or isinstance(latent_dim, bool) or latent_dim <= 0:
            raise ConfigError(f"{PLUGIN}: latent_dim: expected a positive integer, got {latent_dim!r}")
        h, w, c = shape
        values: dict[str, Any] = {
            "image_shape": shape, "task": task, "input_len": h * w, "input_dim": c,
            "latent_len": latent_len, "latent_dim": latent_dim, "output_len": 1, "output_dim": latent_dim,
            "ffw_latent": max(1, int(ffw_ratio * latent_dim)), "ffw_output": max(1, int(ffw_ratio * latent_dim)),
            "input_type": "raw", "decoder_reduction": decoder_reduction, "decoder_residual": False,
            "decoder_projection": True, "n_classes": n_classes,
        }
        num_bands = kwargs.pop("num_bands", None)
        representation = kwargs.pop("representation", "pixels")
        patch_size = kwargs.pop("patch_size", 4)
        if num_bands is not None:
            from .arrays import ArrayOptions  # the same arithmetic as the input-array hook

            try:
                geometry = ArrayOptions({"representation": representation, "patch_size": patch_size,
                                         "num_bands": num_bands})
            except TaskError as exc:
                raise ConfigError(str(exc).replace("options[", "ImageConfig[")) from None
            values["input_len"], values["input_dim"] = geometry.geometry(h, w, c)
            values.update(input_pos_enc="fourier", input_pos_shape=list(geometry.grid(h, w).shape),
                          fourier_num_bands=num_bands, num_bands=num_bands, representation=representation,
                          patch_size=patch_size)
        if task == "segmentation":
            values.update(output_len=h * w, decoder_reduction=None)
        values.update(kwargs)
        super().__init__(**values)
