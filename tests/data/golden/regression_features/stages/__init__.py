"""Stage modules of pipeline `regression_features`, one per stage."""
