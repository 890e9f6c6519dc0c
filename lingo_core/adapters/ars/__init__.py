"""Adaptive rank sampling (ARS): config, allocator and model, like peft's tuner folders."""

from .allocator import AdaptiveRankSampler, ARSSettings
from .model import ARS, settings_from_config

__all__ = ["ARS", "ARSSettings", "AdaptiveRankSampler", "settings_from_config"]
