"""Deterministic, seeded simulation of feitian's replicated cores (TigerBeetle VOPR / FoundationDB style).

``python -m feitian.testing.sim consensus --seed S [--nodes 3|5] [--steps K]`` replays one run exactly;
``--seeds N`` runs many and reports. See :mod:`feitian.testing.sim.consensus` for what is simulated and
:mod:`feitian.testing.sim.consensus_checker` for what is checked.
"""

from feitian.testing.sim.consensus import ConsensusSimulation, SimOptions, SimResult, replay_command, run_consensus_seed
from feitian.testing.sim.consensus_checker import InvariantViolation
from feitian.testing.sim.network import NetworkFaults, SimNetwork

__all__ = [
    "ConsensusSimulation",
    "InvariantViolation",
    "NetworkFaults",
    "SimNetwork",
    "SimOptions",
    "SimResult",
    "replay_command",
    "run_consensus_seed",
]
