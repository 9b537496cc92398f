"""Deterministic, seeded simulation of feitian's replicated cores (TigerBeetle VOPR / FoundationDB style).

``python -m feitian.testing.sim consensus --seed S [--nodes 3|5] [--steps K]`` replays one run exactly;
``--seeds N`` runs many and reports. See :mod:`feitian.testing.sim.consensus` for what is simulated and
:mod:`feitian.testing.sim.consensus_checker` for what is checked.

``python -m feitian.testing.sim coord|dfs --seed S`` runs a service's state machine (Nuwa's, the Pangu
master's) on the same simulated cluster, with its workload and invariants: :mod:`feitian.testing.sim.service`.
"""

from feitian.testing.sim.consensus import ConsensusSimulation, SimOptions, SimResult, replay_command, run_consensus_seed
from feitian.testing.sim.consensus_checker import InvariantViolation
from feitian.testing.sim.network import NetworkFaults, SimNetwork
from feitian.testing.sim.service import SERVICES, ServiceModel, ServiceSimulation, run_service_seed

__all__ = [
    "SERVICES",
    "ConsensusSimulation",
    "InvariantViolation",
    "NetworkFaults",
    "ServiceModel",
    "ServiceSimulation",
    "SimNetwork",
    "SimOptions",
    "SimResult",
    "replay_command",
    "run_consensus_seed",
    "run_service_seed",
]
