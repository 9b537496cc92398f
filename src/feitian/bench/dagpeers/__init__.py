"""The DAG peers: what a Python user runs today for the jobs feitian's JobMaster runs, on the same inputs and the
same task bodies, each the way it ran fastest on a 2-core machine (issue 19, "Benchmark"; docs/bench-dagpeers.md).

Modules, each runnable as ``python -m feitian.bench.dagpeers.X``:

* ``data``: deterministic inputs (wordcount text, terasort records) and their manifests;
* ``tasks``: the task bodies (noop, wordcount map/reduce, terasort sample/splitters/map/reduce);
* ``verify``: the output checks every run goes through (word totals; record count, order, checksum);
* ``driver``: what the peer drivers share (command line, one JSON line per figure, check and clean);
* ``ray_peer``, ``dask_peer``, ``gnusort``, ``single``: the peer drivers;
* ``runner`` (and ``python -m feitian.bench.dagpeers run``): inputs once, each peer in its own process with a
  timeout, a table or JSON.

Ray and Dask come with ``pip install 'feitian[bench]'``; they are imported only by their drivers.
"""
