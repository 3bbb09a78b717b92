from .record import RunRecord, atomic_torch_save, atomic_write_bytes, provenance
from .sinks import NullLogger
from .wandb_logger import WandbLogger, read_offline_run

__all__ = ["NullLogger", "RunRecord", "WandbLogger", "atomic_torch_save", "atomic_write_bytes", "provenance",
           "read_offline_run"]
