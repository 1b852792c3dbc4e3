"""A deterministic simulation of the whole money flow (issue 19): see SIMULATION.md."""
