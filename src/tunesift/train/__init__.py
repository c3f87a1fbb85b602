"""Fine-tuning engine: LoRA / full SFT on a selection, callable from methods and the bench."""
from .finetune import TrainConfig, TrainResult, finetune

__all__ = ["TrainConfig", "TrainResult", "finetune"]
