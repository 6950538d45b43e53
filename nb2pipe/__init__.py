"""nb2pipe: turn tagged Jupyter notebooks into versioned pipelines."""

__version__ = "0.1.0"
