"""Model zoo: AlexNet's variants."""

from .alexnet import INPUT_SIZE, VARIANTS, AlexNet, AlexNetBN, alexnet, apply_paper_init

__all__ = ["INPUT_SIZE", "VARIANTS", "AlexNet", "AlexNetBN", "alexnet", "apply_paper_init"]
