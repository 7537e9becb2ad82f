"""Lockers: one request per upload at a time, within a process, across a host or across hosts.

RedisLocker lives in `tusd_py.locks.redis` and is imported from there: importing the
Redis client costs every process that does not use it a third of a second.
"""

from .base import Locker, LockTimeout, LockUnavailable
from .file import FileLocker
from .memory import MemoryLocker

__all__ = ["FileLocker", "LockTimeout", "LockUnavailable", "Locker", "MemoryLocker"]
