"""What we know about library calls: process-wide state they touch, whether they mutate, which files they read.

This is curated knowledge, deliberately conservative: a call we know nothing about is assumed to mutate the
objects passed to it (its receiver and its arguments for a method call, its arguments for a plain call),
because a missed mutation gives a pipeline that silently computes something else, while an extra one only costs
an extra saved value.

Users extend the state table with ``--state QUALNAME=KEY`` or :func:`register_state`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Effect on a piece of process-wide state.
SET, DRAW, READ = "set", "draw", "read"  # SET overwrites it (seed); DRAW reads and advances it; READ only reads.


@dataclass(frozen=True)
class StateEffect:
    """One call's effect on one piece of process-wide state."""

    #: State key, for example ``numpy.random``.
    key: str
    #: :data:`SET` or :data:`DRAW`.
    kind: str


_EXACT_STATE: dict[str, StateEffect] = {
    "random.seed": StateEffect("random", SET),
    "random.setstate": StateEffect("random", SET),
    "numpy.random.seed": StateEffect("numpy.random", SET),
    "numpy.random.set_state": StateEffect("numpy.random", SET),
    "pandas.set_option": StateEffect("pandas.options", SET),
    "pandas.reset_option": StateEffect("pandas.options", SET),
    "matplotlib.pyplot.style.use": StateEffect("matplotlib.rcParams", SET),
    "matplotlib.style.use": StateEffect("matplotlib.rcParams", SET),
    "matplotlib.pyplot.rc": StateEffect("matplotlib.rcParams", SET),
    "matplotlib.rc": StateEffect("matplotlib.rcParams", SET),
    "matplotlib.rcdefaults": StateEffect("matplotlib.rcParams", SET),
    "matplotlib.pyplot.rcdefaults": StateEffect("matplotlib.rcParams", SET),
    "matplotlib.use": StateEffect("matplotlib.rcParams", SET),
    "seaborn.set": StateEffect("matplotlib.rcParams", SET),
    "seaborn.set_theme": StateEffect("matplotlib.rcParams", SET),
    "seaborn.set_style": StateEffect("matplotlib.rcParams", SET),
    "seaborn.set_context": StateEffect("matplotlib.rcParams", SET),
    "seaborn.set_palette": StateEffect("matplotlib.rcParams", SET),
    "warnings.filterwarnings": StateEffect("warnings.filters", SET),
    "warnings.simplefilter": StateEffect("warnings.filters", SET),
    "warnings.resetwarnings": StateEffect("warnings.filters", SET),
    "os.putenv": StateEffect("os.environ", SET),
    "os.unsetenv": StateEffect("os.environ", SET),
    "os.chdir": StateEffect("os.cwd", SET),
    "torch.manual_seed": StateEffect("torch.random", SET),
    "torch.seed": StateEffect("torch.random", SET),
    "tensorflow.random.set_seed": StateEffect("tensorflow.random", SET),
    "sklearn.set_config": StateEffect("sklearn.config", SET),
    "os.getenv": StateEffect("os.environ", READ),
    "os.getcwd": StateEffect("os.cwd", READ),
    "pandas.get_option": StateEffect("pandas.options", READ),
}
#: Mutable library objects: mutating them (item/attribute assignment, mutating methods) changes state ``key``.
_STATE_OBJECTS: dict[str, str] = {
    "os.environ": "os.environ",
    "sys.path": "sys.path",
    "matplotlib.rcParams": "matplotlib.rcParams",
    "matplotlib.pyplot.rcParams": "matplotlib.rcParams",
    "pandas.options": "pandas.options",
    "numpy.random": "numpy.random",
}
#: Functions under these modules draw from (and advance) the module's global generator...
_DRAWING_MODULES = {"random": "random", "numpy.random": "numpy.random", "torch": "torch.random"}
#: ...except these, which create independent generators or only read.
_NOT_DRAWING = frozenset(
    """Random SystemRandom getstate default_rng Generator RandomState SeedSequence BitGenerator PCG64 PCG64DXSM
    MT19937 Philox SFC64 get_state""".split()
)
_TORCH_DRAWS = frozenset(
    "rand randn randint randperm normal bernoulli multinomial poisson rand_like randn_like".split()
)

_user_state: dict[str, StateEffect] = {}


def register_state(qualname: str, key: str, kind: str = SET) -> None:
    """Declare that calling ``qualname`` changes process-wide state ``key`` (``kind`` is ``set`` or ``draw``)."""
    if kind not in (SET, DRAW, READ):
        raise ValueError(f"kind must be {SET!r}, {DRAW!r} or {READ!r}")
    _user_state[qualname] = StateEffect(key, kind)


def state_effect(qualname: str, extra: dict[str, StateEffect] | None = None) -> StateEffect | None:
    """The process-wide state a call to ``qualname`` touches, if any."""
    for table in (extra or {}, _user_state, _EXACT_STATE):
        if qualname in table:
            return table[qualname]
    module, _, func = qualname.rpartition(".")
    if module in ("random", "numpy.random") and func not in _NOT_DRAWING and not func[:1].isupper():
        return StateEffect(_DRAWING_MODULES[module], DRAW)
    if module == "torch" and func in _TORCH_DRAWS:
        return StateEffect("torch.random", DRAW)
    return None


def state_object(qualname: str) -> str | None:
    """State key of a mutable library object (``os.environ``), matching a prefix (``os.environ.update``)."""
    parts = qualname.split(".")
    for cut in range(len(parts), 0, -1):
        key = _STATE_OBJECTS.get(".".join(parts[:cut]))
        if key:
            return key
    return None


# --- mutation knowledge --------------------------------------------------------------------------------------

#: Methods that never modify their receiver (unless called with ``inplace=True``).
PURE_METHODS = frozenset(
    """head tail describe info copy groupby mean median mode sum std var min max count value_counts unique nunique
    isna isnull notna notnull astype reshape ravel flatten transpose T dot matmul merge join query fillna dropna
    drop rename reset_index set_index sort_values sort_index replace apply applymap map agg aggregate transform
    pivot pivot_table melt stack unstack corr cov cumsum cumprod diff pct_change shift rolling expanding ewm
    resample round abs clip where mask isin between any all idxmax idxmin argmax argmin argsort nlargest
    nsmallest sample to_numpy to_list tolist to_dict to_frame to_csv to_json to_parquet to_excel to_pickle
    to_string to_markdown to_html to_sql to_records items keys values get format startswith endswith split
    rsplit strip lstrip rstrip lower upper title capitalize encode decode find index rindex count join
    partition splitlines zfill center ljust rjust predict predict_proba predict_log_proba decision_function
    score transform inverse_transform get_params get_feature_names_out plot hist boxplot bar barh scatter line
    pie area kde density memory_usage select_dtypes filter reindex align combine assign explode duplicated
    drop_duplicates equals nbytes item squeeze any take repeat searchsorted nonzero cumcount size first last
    ngroups describe_option style sum_of_squares __len__ __contains__ __getitem__ dt str cat loc iloc at iat
    iterrows itertuples iteritems union intersection difference symmetric_difference issubset issuperset
    isdisjoint read_text read_bytes exists is_file is_dir glob rglob open resolve absolute with_suffix
    with_name joinpath relative_to savefig show""".split()
)
_MUTATING_ALWAYS = frozenset({"fit", "partial_fit", "fit_transform", "fit_predict", "fit_resample"})
#: Methods that may modify their receiver but never the objects passed to them (estimators' ``fit(X, y)``, the
#: containers' own mutators, an Axes being decorated). Any other method we know nothing about may modify its
#: arguments too: dowhy's ``model.estimate_effect(estimand)`` sets ``estimand.identifier_method``.
_RECEIVER_ONLY_METHODS = _MUTATING_ALWAYS | frozenset(
    """append extend insert update add setdefault pop popitem remove discard clear sort reverse write writelines
    close flush set_title set_xlabel set_ylabel set_xlim set_ylim set_xticks set_yticks set_xticklabels
    set_yticklabels set_xscale set_yscale set_aspect set legend grid tick_params axhline axvline axhspan axvspan
    annotate text suptitle tight_layout subplots_adjust colorbar set_size_inches
    normal standard_normal uniform integers choice random randint rand randn random_sample permutation poisson
    binomial multinomial exponential standard_exponential gamma standard_gamma beta lognormal laplace logistic
    standard_t chisquare geometric gumbel weibull pareto rayleigh vonmises wald triangular dirichlet
    multivariate_normal negative_binomial hypergeometric zipf bytes spawn""".split()  # RNG draws read their sizes
)

#: Plain functions (by qualified name prefix) that never modify their arguments.
_PURE_FUNCTION_PREFIXES = (
    "builtins.",
    "numpy.",
    "pandas.",
    "matplotlib.",
    "seaborn.",
    "scipy.stats.",
    "sklearn.metrics.",
    "sklearn.model_selection.",
    "sklearn.preprocessing.",
    "sklearn.pipeline.make_pipeline",
    "math.",
    "statistics.",
    "json.dumps",
    "json.dump",
    "pickle.dump",
    "pickle.dumps",
    "joblib.dump",
    "copy.",
    "itertools.",
    "functools.",
    "operator.",
    "collections.",
    "os.path.",
    "pathlib.",
    "time.",
    "datetime.",
    "re.",
    "textwrap.",
    "pprint.",
    "IPython.display.",
    "display",
    "print",
    "len",
    "str",
    "repr",
)
#: ...except these, which do.
_MUTATING_FUNCTIONS = frozenset(
    """numpy.random.shuffle numpy.copyto numpy.put numpy.place numpy.putmask numpy.fill_diagonal
    numpy.random.Generator.shuffle random.shuffle numpy.ndarray.sort""".split()
)
_PURE_BUILTINS = frozenset(
    """print len str repr int float bool complex list tuple dict set frozenset sorted reversed enumerate zip
    range min max sum abs round any all isinstance issubclass type id hash format map filter iter hasattr
    getattr callable divmod pow ord chr hex oct bin bytes bytearray open vars dir display super object
    property staticmethod classmethod next slice memoryview ascii input help""".split()
)


def method_mutates(method: str, inplace: bool) -> bool:
    """Whether calling ``obj.method(...)`` may modify ``obj``."""
    if inplace or method in _MUTATING_ALWAYS:
        return True
    return method not in PURE_METHODS


def method_mutates_args(method: str) -> bool:
    """Whether calling ``obj.method(...)`` may modify the objects passed to it (not only ``obj``)."""
    return method not in PURE_METHODS and method not in _RECEIVER_ONLY_METHODS


def function_mutates_args(qualname: str | None, bare_name: str | None) -> bool:
    """Whether a plain call may modify the objects passed to it."""
    if qualname is None:
        return bare_name not in _PURE_BUILTINS
    if qualname in _MUTATING_FUNCTIONS:
        return True
    if qualname.startswith("builtins."):
        return qualname[len("builtins.") :] not in _PURE_BUILTINS
    return not any(qualname == p or qualname.startswith(p) for p in _PURE_FUNCTION_PREFIXES if p.endswith("."))


# --- files ---------------------------------------------------------------------------------------------------

_READERS_PREFIX = ("pandas.read_",)
_READERS = frozenset(
    """numpy.load numpy.loadtxt numpy.genfromtxt numpy.fromfile joblib.load pickle.load
    matplotlib.pyplot.imread PIL.Image.open xarray.open_dataset yaml.safe_load""".split()
)
_WRITERS = frozenset("numpy.save numpy.savez numpy.savetxt joblib.dump matplotlib.pyplot.savefig".split())
_WRITER_METHODS = frozenset("to_csv to_json to_parquet to_excel to_pickle to_feather to_hdf savefig".split())
_READER_METHODS = frozenset({"read_text", "read_bytes"})


def file_access(qualname: str | None, method: str | None) -> str | None:
    """``read``/``write`` when a call reads or writes the file named by its first argument."""
    if qualname:
        if qualname.startswith(_READERS_PREFIX) or qualname in _READERS:
            return "read"
        if qualname in _WRITERS:
            return "write"
    if method in _WRITER_METHODS:
        return "write"
    return None
