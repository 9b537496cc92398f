"""Recipes on Nuwa's primitives (NUWA-6 … NUWA-8): locks, election, naming with the client cache, barrier, queue."""

from feitian.coord.client.recipes.barrier import Barrier
from feitian.coord.client.recipes.election import ELECTIONS_ROOT, Election, Leader
from feitian.coord.client.recipes.lock import Lock, LockLease
from feitian.coord.client.recipes.naming import SERVICES_ROOT, NameCache, Registration, register
from feitian.coord.client.recipes.queue import Queue

__all__ = [
    "ELECTIONS_ROOT",
    "SERVICES_ROOT",
    "Barrier",
    "Election",
    "Leader",
    "Lock",
    "LockLease",
    "NameCache",
    "Queue",
    "Registration",
    "register",
]
