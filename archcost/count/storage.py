"""Tell tensor storages apart, and know when each one is freed.

A storage is identified by its C pointer while it is alive; a finalizer forgets it when
it dies, so a later storage at the same address is a new one. Works for real and
``meta`` tensors alike (meta storages have no data, but have identity and a size).
"""

import weakref

import torch


class StorageTracker:
    def __init__(self, on_free=None):
        self.live = {}  # storage key -> bytes
        self._on_free = on_free

    @staticmethod
    def key(t: torch.Tensor) -> int:
        return t.untyped_storage()._cdata

    def seen(self, t: torch.Tensor) -> bool:
        return self.key(t) in self.live

    def add(self, t: torch.Tensor) -> bool:
        """Start tracking ``t``'s storage; False if it was already tracked."""
        st = t.untyped_storage()
        k = st._cdata
        if k in self.live:
            return False
        self.live[k] = st.nbytes()
        weakref.finalize(st, self._free, k)
        return True

    def _free(self, k):
        nbytes = self.live.pop(k, None)
        if nbytes is not None and self._on_free is not None:
            self._on_free(nbytes)
