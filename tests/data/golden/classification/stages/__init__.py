"""Stage modules of pipeline `classification`, one per stage."""
