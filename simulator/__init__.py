"""A realistic miniTRASGO station network on disk: ``.dat`` event files, daily archives,
slow-control logs, the mechanical logbook, matching ERA5 NetCDF files, and the truth to validate
against.

Entry points: ``mingo simulate`` (:mod:`simulator.cli`), :func:`simulator.run.run_batch`,
:func:`simulator.live.run_live`. See simulator/README.md.
"""
