"""Peer programs that ``feitian bench`` runs beside feitian, in the same run, so its figures come with ratios.

Written for this project and shipped with it: ``msgpack_echo`` is the hand-rolled RPC that a Python programmer
would write on asyncio (or uvloop) streams with msgpack. It needs ``msgpack`` (``pip install 'feitian[bench]'``);
without it the benchmark says which peers it skipped and why.
"""
