"""Stage modules of pipeline `kale_style`, one per stage."""
