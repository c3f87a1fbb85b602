"""Fine-tuning engine: LoRA / full SFT on a selection, callable from methods and the bench."""
from .finetune import EpochSnapshot, Sampler, StepFeedback, TrainConfig, TrainResult, finetune, training_fingerprint

__all__ = ["EpochSnapshot", "Sampler", "StepFeedback", "TrainConfig", "TrainResult", "finetune", "training_fingerprint"]
