"""Fine-tuning engine: LoRA / full SFT on a selection, callable from methods and the bench."""
from .finetune import EpochSnapshot, Sampler, StepFeedback, TrainConfig, TrainResult, finetune

__all__ = ["EpochSnapshot", "Sampler", "StepFeedback", "TrainConfig", "TrainResult", "finetune"]
