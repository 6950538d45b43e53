"""Stage modules of pipeline `sweep_parameters`, one per stage."""
