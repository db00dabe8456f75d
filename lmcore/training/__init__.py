"""Training (chapter 4 onwards): ``Trainer`` and ``TrainConfig``, checkpoints that resume exactly,
and several processes under ``torchrun``."""
from .checkpoint import load_checkpoint, model_config_dict, resolve_checkpoint, save_checkpoint, unwrap
from .config import BatchFn, NonFiniteLossError, TrainConfig
from .distributed import DistInfo, all_reduce_mean, cleanup_distributed, dist_info, init_distributed
from .trainer import Trainer

__all__ = ["Trainer", "TrainConfig", "NonFiniteLossError", "BatchFn", "model_config_dict",
           "save_checkpoint", "load_checkpoint", "resolve_checkpoint", "unwrap",
           "DistInfo", "dist_info", "init_distributed", "cleanup_distributed", "all_reduce_mean"]
