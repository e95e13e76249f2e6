"""Deterministic simulations of gossipreg clusters.

* :mod:`simulations.engine`: the discrete-event simulator (real node cores,
  virtual clock, simulated network);
* :mod:`simulations.metrics`: an event-driven :class:`~simulations.metrics.Tracker`
  of every member's view, for convergence and detection times and false deaths;
* :mod:`simulations.run_command`: the standard measured run (the `run` command);
* ``python -m simulations run --help``: the command line.
"""
