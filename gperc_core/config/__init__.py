"""Configuration objects: the Perceiver's hyper-parameters and the training settings."""

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.config.training import TrainingConfig

__all__ = ["PerceiverConfig", "TrainingConfig"]
