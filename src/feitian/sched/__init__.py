"""Fuxi (伏羲), the resource manager: FuxiMaster grants multi-dimensional resources on machines to applications.

So far only the pure core exists (:mod:`feitian.sched.core`): resources and shapes, the incremental demand
protocol, the policies (priority, fair rounds, quota groups with lending, preemption), and its invariants. The
FuxiMaster service, the Tubo agent and the client that drive it come next (docs/sched.md).
"""
