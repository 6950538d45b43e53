"""Run the pipeline in this process: python -m kale_style [-p NAME VALUE]..."""

import argparse
import ast

from .pipeline import PARAMETERS, run


def _typed(name, text):
    default = PARAMETERS[name]
    if isinstance(default, str):
        return text
    if isinstance(default, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise SystemExit(f"parameter {name}: expected true or false, got {text!r}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise SystemExit(f"parameter {name}: {text!r} is not a {type(default).__name__}") from None
    if isinstance(default, float) and isinstance(value, int):
        value = float(value)
    if default is not None and not isinstance(value, type(default)):
        raise SystemExit(f"parameter {name}: {text!r} is not a {type(default).__name__}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kale_style", description=__doc__)
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args(argv)
    params = {}
    for key, text in args.parameter:
        if key not in PARAMETERS:
            parser.error(f"unknown parameter {key!r}; parameters: {', '.join(PARAMETERS) or 'none'}")
        params[key] = _typed(key, text)
    run(**params)


if __name__ == "__main__":
    main()
