"""`Ensemble`: a deep ensemble, ``ensemble_size`` independently initialised copies of one model trained
side by side, whose evaluation output is the mean of the members' class probabilities.

A config with ``ensemble_size = K > 1`` builds one (`gperc_core.model.build.model_for_config`). Member
``k`` is the model of the config with ``ensemble_size = 1`` and seed `member_seed` ``(seed, k)``; member 0
keeps the config's own seed, so it is the single model of that seed. The members share nothing.

- **Training** (``model.train()``) returns every member's logits stacked along the batch axis, member by
  member (``[K * b, ...]``). The trainer's loss (`gperc_core.train.loss.MaskedCrossEntropy` with
  ``members=K``) scores them against the targets repeated K times: the mean of the members' own losses,
  so each member gets the gradient it would get trained alone on the same batches (Lakshminarayanan et
  al., 2017). Training the mixture's loss instead lets members lean on each other, which generalises
  worse (Jeffares et al., 2023).
- **Evaluation** (``model.eval()``) returns ``log(mean_k softmax(logits_k))`` over the last axis (float32),
  a log-probability that `torch.argmax`, cross-entropy and exported graphs read like logits.

A deep ensemble costs K times the compute and parameters of one member. Pipeline parallelism does not split
an ensemble (`gperc_core.parallel.pipeline.build_pipeline` refuses one); DDP and one process train it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.errors import ConfigError
from gperc_core.model.fusion import single_model_class
from gperc_core.model.perceiver import Perceiver, unit_seed

__all__ = ["Ensemble", "member_config", "member_seed", "mixture_log_probs"]


def member_seed(seed: int, k: int) -> int:
    """The seed of member ``k`` of an ensemble of config seed ``seed``: ``seed`` itself for member 0,
    a distinct stable seed for each other member."""
    return int(seed) if k == 0 else unit_seed(seed, f"members.{k}") % (2 ** 31)


def member_config(config: PerceiverConfig, k: int) -> PerceiverConfig:
    """The config of member ``k`` of ``config``'s ensemble: the same model, one member, `member_seed`."""
    return config.replace(ensemble_size=1, seed=member_seed(config.seed, k))


def mixture_log_probs(logits: list[torch.Tensor]) -> torch.Tensor:
    """``log(mean_k softmax(logits_k))`` over the last axis, in float32: the log of the members' mean
    class probabilities."""
    stacked = torch.stack([torch.log_softmax(t.float(), dim=-1) for t in logits])
    return torch.logsumexp(stacked, dim=0) - math.log(len(logits))


class Ensemble(nn.Module):
    """``config.ensemble_size`` members (``members[k]``, each a `Perceiver` or a
    `gperc_core.model.fusion.ModalityFusion` of `member_config`), called like one of them.

    ``forward(input_array, attention_mask=None, output_array=None, return_attentions=False)`` returns the
    members' stacked logits ``[K * b, ...]`` in training mode and the mixture's log-probabilities
    ``[b, ...]`` in evaluation mode; with ``return_attentions`` also member 0's attentions.
    """

    def __init__(self, config: PerceiverConfig) -> None:
        super().__init__()
        if not isinstance(config, PerceiverConfig):
            raise ConfigError(f"config: expected a PerceiverConfig, got {type(config).__name__}")
        config.validate()
        if config.ensemble_size < 2:
            raise ConfigError(f"ensemble_size: expected at least 2 for an Ensemble (1 is a single model), "
                              f"got {config.ensemble_size}")
        self.config = config
        self.members = nn.ModuleList([single_model_class(c)(c) for c in
                                      (member_config(config, k) for k in range(config.ensemble_size))])

    def forward(self, input_array: Any, attention_mask: Any = None, output_array: torch.Tensor | None = None,
                return_attentions: bool = False):
        """Run every member on the same inputs (see the class docstring for what is returned)."""
        outs = [member(input_array, attention_mask, output_array, return_attentions) for member in self.members]
        logits = [out[0] for out in outs] if return_attentions else outs
        combined = torch.cat(logits, dim=0) if self.training else mixture_log_probs(logits)
        return (combined, outs[0][1]) if return_attentions else combined

    # The same utilities as a Perceiver (they only use the module's parameters and ``config``).
    num_parameters = Perceiver.num_parameters
    save = Perceiver.save
    from_pretrained = Perceiver.__dict__["from_pretrained"]

    def save_member(self, k: int, directory: str | Path) -> Path:
        """Write member ``k`` alone as a single-model folder (``config.json`` with its own seed and
        ``ensemble_size = 1``, ``model.safetensors``); returns it."""
        if not isinstance(k, int) or not 0 <= k < len(self.members):
            raise IndexError(f"k: expected a member index in [0, {len(self.members)}), got {k!r}")
        return self.members[k].save(directory)
