"""Lockers: one request per upload at a time, within a process or across a host."""

from .base import Locker, LockTimeout
from .file import FileLocker
from .memory import MemoryLocker

__all__ = ["FileLocker", "LockTimeout", "Locker", "MemoryLocker"]
