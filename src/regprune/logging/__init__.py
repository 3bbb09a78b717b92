from .record import RunRecord, atomic_torch_save, atomic_write_bytes, provenance
from .sinks import NullLogger

__all__ = ["NullLogger", "RunRecord", "atomic_torch_save", "atomic_write_bytes", "provenance"]
