"""gperc's documented model API (the seed API), kept under its original module name.

Code written for the original gperc ports by changing imports: the blocks, the Perceiver, the
position encodings and `get_distributed_model` keep their names, signatures and return values.
The implementations live in `gperc_core.model` (single process) and `gperc_core.parallel`.
"""

from __future__ import annotations

from typing import Any

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.errors import ConfigError
from gperc_core.model.attention import Block
from gperc_core.model.perceiver import (DecoderBlock, Embeddings, EncoderBlock, Perceiver, PerceiverIO,
                                        ProcessorBlock)
from gperc_core.model.position import build_position_encoding


def get_distributed_model(config: PerceiverConfig, **kwargs: Any):
    """Return gperc's distributed model: a pipeline-parallel Perceiver on `torch.distributed.pipelining`.

    Keyword arguments go to `gperc_core.parallel.pipeline.build_pipeline` (stages, schedule,
    microbatches...); the result is a `gperc_core.parallel.pipeline.PipelineHandle`.
    """
    if not isinstance(config, PerceiverConfig):
        raise ConfigError(f"config: expected a PerceiverConfig, got {type(config).__name__}")
    from gperc_core.parallel.pipeline import build_pipeline

    return build_pipeline(config, **kwargs)


__all__ = ["Block", "Embeddings", "EncoderBlock", "ProcessorBlock", "DecoderBlock", "Perceiver", "PerceiverIO",
           "build_position_encoding", "get_distributed_model"]
