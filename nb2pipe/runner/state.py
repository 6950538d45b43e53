"""Process-wide state carried across stage boundaries: capture after a stage, restore before its dependants.

The converter names each piece of state with a key (``numpy.random``, ``pandas.options``...). Each key here has a
getter and a setter built on the library's own public state API (``random.getstate``, ``np.random.get_state``,
``rcParams``...), so a seed set in one stage reaches the draws made in another, exactly as in the notebook. A
library that is not imported in the worker has no state to carry: its getter returns ``None`` and nothing is set.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

Getter = Callable[[], Any]
Setter = Callable[[Any], None]


def _module(name: str) -> Any:
    return sys.modules.get(name)


def _lib(name: str) -> Any:
    """Import an optional library as ``Any`` (its state setter runs only when a snapshot of it exists)."""
    return importlib.import_module(name)


def _get_numpy() -> Any:
    np = _module("numpy")
    return None if np is None else np.random.get_state()


def _set_numpy(value: Any) -> None:
    _lib("numpy.random").set_state(value)


def _get_random() -> Any:
    import random

    return random.getstate()


def _set_random(value: Any) -> None:
    import random

    random.setstate(value)


def _get_pandas() -> Any:
    pd = _module("pandas")
    if pd is None:
        return None
    config = _lib("pandas._config.config")
    return {key: pd.get_option(key) for key in sorted(config._registered_options)}


def _set_pandas(value: dict[str, Any]) -> None:
    pd = _lib("pandas")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, option in value.items():
            try:
                if pd.get_option(key) != option:
                    pd.set_option(key, option)
            except (KeyError, ValueError, TypeError):  # deprecated or removed option
                continue


def _get_rc() -> Any:
    mpl = _module("matplotlib")
    if mpl is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {k: v for k, v in dict(mpl.rcParams).items() if k != "backend"}


def _set_rc(value: dict[str, Any]) -> None:
    mpl = _lib("matplotlib")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mpl.rcParams.update(value)


def _get_warnings() -> Any:
    return list(warnings.filters)


def _set_warnings(value: list[Any]) -> None:
    filters: list[Any] = warnings.filters  # type: ignore[assignment]
    filters[:] = value
    warnings._filters_mutated()  # type: ignore[attr-defined]


def _set_environ(value: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(value)


def _set_syspath(value: list[str]) -> None:
    sys.path[:] = value


def _get_sklearn() -> Any:
    sk = _module("sklearn")
    return None if sk is None else sk.get_config()


def _set_sklearn(value: dict[str, Any]) -> None:
    _lib("sklearn").set_config(**value)


def _get_torch() -> Any:
    torch = _module("torch")
    return None if torch is None else torch.get_rng_state()


def _set_torch(value: Any) -> None:
    _lib("torch").set_rng_state(value)


#: State key -> (capture, restore). Keys the converter may emit that are absent here cannot be carried.
HANDLERS: dict[str, tuple[Getter, Setter]] = {
    "random": (_get_random, _set_random),
    "numpy.random": (_get_numpy, _set_numpy),
    "pandas.options": (_get_pandas, _set_pandas),
    "matplotlib.rcParams": (_get_rc, _set_rc),
    "warnings.filters": (_get_warnings, _set_warnings),
    "os.environ": (lambda: dict(os.environ), _set_environ),
    "os.cwd": (os.getcwd, os.chdir),
    "sys.path": (lambda: list(sys.path), _set_syspath),
    "sklearn.config": (_get_sklearn, _set_sklearn),
    "torch.random": (_get_torch, _set_torch),
}


def capture(keys: list[str]) -> dict[str, Any]:
    """Snapshot the given state keys (unknown keys and libraries not loaded are left out)."""
    out: dict[str, Any] = {}
    for key in keys:
        handler = HANDLERS.get(key)
        if handler is None:
            continue
        value = handler[0]()
        if value is not None:
            out[key] = value
    return out


def restore(snapshot: dict[str, Any]) -> None:
    """Apply a snapshot taken by :func:`capture`."""
    for key, value in snapshot.items():
        handler = HANDLERS.get(key)
        if handler is not None:
            handler[1](value)


def unsupported(keys: list[str]) -> list[str]:
    """Keys the runner cannot carry (a user-declared ``--state`` key, ``tensorflow.random``)."""
    return [k for k in keys if k not in HANDLERS]
