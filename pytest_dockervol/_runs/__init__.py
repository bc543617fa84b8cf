"""Runs: leases, heartbeats, the reaper of dead runs, the watchdog, reports and the
``pytest-dockervol`` command. Imports every package below it, never the pytest layer."""
