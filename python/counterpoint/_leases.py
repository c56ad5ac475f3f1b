"""Resume leases: while a process resumes a run, it holds the run's lease in the store, so
a second process resuming the same run is refused instead of running its agents again.

A lease names its holder (a unique id, the process id and the host) and lapses
``LEASE_SECONDS`` after it was last renewed. The holder's checkpoint writer renews it
every ``RENEW_SECONDS`` while the run is alive, and the run's end releases it. A holder
that crashed stops renewing, so its lease lapses within ``LEASE_SECONDS``; on the same
host, a holder whose process is gone is replaced at once.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import threading
import time
import uuid

from ._errors import StoreError
from ._store import LeaseHolder, Store

LEASE_SECONDS = 60.0
RENEW_SECONDS = 20.0
_HOST = socket.gethostname()


class Lease:
    """One run's lease, held by this process."""

    def __init__(self, store: Store, run_key: str, holder: LeaseHolder) -> None:
        self.store = store
        self.run_key = run_key
        self.holder = holder

    def renew(self) -> None:
        """Moves the expiry ``LEASE_SECONDS`` on; a store failure is left for the next
        renewal (the lease lapses only if every renewal fails for that long)."""
        with contextlib.suppress(Exception):  # the next renewal tries again
            self.store.renew_lease(self.run_key, self.holder.id, time.time() + LEASE_SECONDS)

    def release(self) -> None:
        """Gives the lease up (once; later calls do nothing)."""
        with _held_lock:
            if _held.pop(id(self), None) is None:
                return
        with contextlib.suppress(Exception):  # a lease not released lapses on its own
            self.store.release_lease(self.run_key, self.holder.id)


# Leases this process holds, by id(lease): the checkpoint writers renew them.
_held: dict[int, Lease] = {}
_held_lock = threading.Lock()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _utc(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def take_lease(store: Store, run_key: str) -> Lease:
    """Takes the run's lease for this process.

    Raises:
        StoreError: another process holds it (naming that process and what to do).
    """
    now = time.time()
    holder = LeaseHolder(uuid.uuid4().hex, os.getpid(), _HOST, now, now + LEASE_SECONDS)
    current = store.acquire_lease(run_key, holder)
    if current is not None and current.id != holder.id and current.host == _HOST \
            and not _alive(current.pid):
        # Its process is gone (killed mid-resume): no need to wait for the lease to lapse.
        current = store.acquire_lease(run_key, holder, replacing=current.id)
    if current is not None and current.id != holder.id:
        who = "this process" if (current.pid, current.host) == (holder.pid, _HOST) else \
            f"another process (pid {current.pid} on {current.host})"
        raise StoreError(
            f"run {run_key!r} is being resumed by {who} since {_utc(current.since)}; wait "
            "for that run to finish (app.runs() shows its status), or, if that process is "
            f"gone, resume after its lease lapses at {_utc(current.expires)}"
        )
    lease = Lease(store, run_key, holder)
    with _held_lock:
        _held[id(lease)] = lease
    return lease


def renew_leases(store: Store) -> None:
    """Renews the leases this process holds in ``store`` (the store's checkpoint writer
    calls it every ``RENEW_SECONDS``)."""
    with _held_lock:
        leases = [lease for lease in _held.values() if lease.store is store]
    for lease in leases:
        lease.renew()


def release_leases(store: Store) -> None:
    """Releases every lease this process holds in ``store`` (it is being closed)."""
    with _held_lock:
        leases = [lease for lease in _held.values() if lease.store is store]
    for lease in leases:
        lease.release()
