"""Fine-tuning engine: LoRA / full SFT on a selection, callable from methods and the bench."""
from .finetune import EpochSnapshot, TrainConfig, TrainResult, finetune

__all__ = ["EpochSnapshot", "TrainConfig", "TrainResult", "finetune"]
