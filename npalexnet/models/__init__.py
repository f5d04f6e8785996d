"""Model zoo: AlexNet's variants, pretrained weights in, frozen features for fine-tuning."""

from .alexnet import (INITS, INPUT_SIZE, VARIANTS, AlexNet, AlexNetBN, alexnet, apply_kaiming_init,
                      apply_paper_init)
from .freeze import FreezeError, freeze, trainable_parameters
from .pretrained import LoadReport, PretrainedError, load_pretrained, read_state_dict

__all__ = ["INITS", "INPUT_SIZE", "VARIANTS", "AlexNet", "AlexNetBN", "FreezeError", "LoadReport", "PretrainedError",
           "alexnet", "apply_kaiming_init", "apply_paper_init", "freeze", "load_pretrained", "read_state_dict",
           "trainable_parameters"]
