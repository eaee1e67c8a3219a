"""ferroflow settings: read from the environment and a profile file, overridable in a `with` block.

Precedence, lowest to highest: the defaults below < the active profile in
`${FERROFLOW_HOME}/profiles.toml` < `FERROFLOW_*` environment variables < `temporary_settings`.

`get_current_settings()` is called on hot paths (every result), so the parsed settings are cached
and re-read only when a `FERROFLOW_*` variable or the profile file changes. Inside
`profile_checked_once()` (held by every flow run) the profile file is checked once, not on each
call: a profile changed by another process takes effect from the next flow run on.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ferroflow._core import atomic_write
from ferroflow.exceptions import InvalidSettingError

ENV_PREFIX = "FERROFLOW_"
PROFILE_ENV_NAME = "FERROFLOW_PROFILE"
DEFAULT_PROFILE = "default"
PROFILES_FILE_NAME = "profiles.toml"
DEFAULT_HOME = Path("~/.ferroflow")

Source = Literal["default", "profile", "env", "temporary"]

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# Run store URLs: checked here, where the setting is read, and by `ferroflow.runstore.open_store`
# for URLs passed to it directly, so both say the same thing.

SQLITE_URL_PREFIX = "sqlite:///"
MEMORY_RUNSTORE_URL = "memory://"
POSTGRESQL_URL_PREFIXES = ("postgresql://", "postgres://")
DEFAULT_RUNSTORE_FILE_NAME = "ferroflow.db"
RUNSTORE_URL_FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db (three slashes, then the path), "
    "postgresql://user:password@host:port/database or memory://"
)


def check_runstore_url(url: str) -> str:
    """`url` without surrounding blanks, if it names a run store ferroflow can open.

    Raises ValueError saying what was given (without a password) and listing the accepted forms.
    """
    stripped = url.strip()
    if stripped == MEMORY_RUNSTORE_URL:
        return stripped
    if stripped.startswith(SQLITE_URL_PREFIX) and stripped.removeprefix(SQLITE_URL_PREFIX).strip():
        return stripped
    if is_postgresql_url(stripped) and stripped.split("://", 1)[1].strip("/"):
        return stripped
    raise ValueError(f"Unsupported run store URL {redact_url(url)!r}: use {RUNSTORE_URL_FORMS}")


def is_postgresql_url(url: str) -> bool:
    return url.startswith(POSTGRESQL_URL_PREFIXES)


def redact_url(url: str) -> str:
    """`url` with its password, if it has one, replaced by `***`: a URL fit to show or log."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    authority, slash, path = rest.partition("/")
    credentials, at, host = authority.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{slash}{path}"


def _runstore_url_or_unset(value: Any) -> Any:
    """A blank URL means "not set"; any other text must be an accepted run store URL."""
    if not isinstance(value, str):
        return value  # None stays unset; other types get the usual "not a string" error
    if not value.strip():
        return None
    try:
        return check_runstore_url(value)
    except ValueError as exc:
        # A custom error keeps pydantic's "Value error, " prefix off the message.
        raise PydanticCustomError("runstore_url", "{reason}", {"reason": str(exc)}) from exc


RunStoreUrl = Annotated[str | None, BeforeValidator(_runstore_url_or_unset)]


STORAGE_SLUG_FORM = "'<storage-type>/<saved-name>', e.g. 'local-file-system/dev'"


def _storage_slug_or_unset(value: Any) -> Any:
    """A blank slug means "not set"; any other text must have the slug's two parts. Whether a
    storage is saved under it is checked when results are first written there."""
    if not isinstance(value, str):
        return value
    slug = value.strip()
    if not slug:
        return None
    storage_type, _, name = slug.partition("/")
    if not storage_type or not name:
        reason = f"{value!r} is not a storage slug: use {STORAGE_SLUG_FORM}"
        raise PydanticCustomError("storage_slug", "{reason}", {"reason": reason})
    return slug


StorageSlug = Annotated[str | None, BeforeValidator(_storage_slug_or_unset)]


def _blank_is_unset(value: Any) -> Any:
    """A blank secret or path means "not set" (an empty variable must not become a key)."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_blank_is_unset)]
OptionalPath = Annotated[Path | None, BeforeValidator(_blank_is_unset)]

DEFAULT_MAX_DECOMPRESSED_SIZE = 1 << 30


class Settings(BaseSettings):
    """The settings in force. Each field `x` is read from the variable `FERROFLOW_X`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    home: Path = Field(
        default=DEFAULT_HOME,
        description="ferroflow's own folder: profiles.toml, saved storages, default result storage.",
    )
    results_persist_by_default: bool = Field(
        default=False,
        description="Persist results even when no feature of the flow or task needs it.",
    )
    local_storage_path: Path = Field(
        default=None,  # type: ignore[assignment]  # filled in from `home` by the validator below
        validate_default=True,
        description="Where results go when no storage is configured (default: ${FERROFLOW_HOME}/storage).",
    )
    results_default_serializer: str = Field(
        default="pickle",
        description="Serializer type name used when no flow or task names one, e.g. 'json'.",
    )
    async_fetch_state_result: bool = Field(
        default=False,
        description="In async code, make State.result() fetch persisted results without fetch=True.",
    )
    results_fsync: bool = Field(
        default=False,
        description=(
            "fsync each result file and its folder. Off by default: the atomic rename already "
            "survives a killed process and the checksum detects what a power loss can leave."
        ),
    )
    results_unfinished_write_max_age: float = Field(
        default=3600.0,
        gt=0,
        description=(
            "Seconds after which a temporary file of an unfinished result write (its writer was "
            "killed) is removed automatically from the folder ferroflow writes to."
        ),
    )
    results_max_bytes: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Keep a local result storage under this many bytes: after a write that passes it, the "
            "least recently used results are removed (down to 90%). None: no limit."
        ),
    )
    tasks_refresh_cache: bool = Field(
        default=False,
        description="Ignore cached task results and recompute them (the new results are cached).",
    )
    runstore_record_runs: bool = Field(
        default=True,
        description=(
            "Record flow runs, task runs and their states in the run store (FERROFLOW_RUNSTORE_URL). "
            "Off: nothing is recorded; the task cache still uses the run store."
        ),
    )
    runstore_url: RunStoreUrl = Field(
        default=None,
        description=(
            f"The run store: {RUNSTORE_URL_FORMS}. Unset: "
            f"{SQLITE_URL_PREFIX}${{FERROFLOW_HOME}}/{DEFAULT_RUNSTORE_FILE_NAME}."
        ),
    )

    default_result_storage_block: StorageSlug = Field(
        default=None,
        description=(
            f"A saved storage's slug ({STORAGE_SLUG_FORM}) used for results when no flow or task "
            "names a result storage. Unset: a local folder at FERROFLOW_LOCAL_STORAGE_PATH."
        ),
    )

    # Trust in stored results (see docs/format.md, "Signed blobs").
    results_signing_key: OptionalSecret = Field(
        default=None,
        description=(
            "A secret (16 characters or more) that signs every result written, so that readers "
            "can refuse results they did not write. Or FERROFLOW_RESULTS_SIGNING_KEY_FILE."
        ),
    )
    results_signing_key_file: OptionalPath = Field(
        default=None,
        description="A file holding the signing key (instead of FERROFLOW_RESULTS_SIGNING_KEY).",
    )
    results_verification_keys: OptionalSecret = Field(
        default=None,
        description=(
            "More keys whose signatures are accepted, separated by commas: the keys signing used "
            "before a rotation. The signing key is always accepted."
        ),
    )
    results_require_signature: bool = Field(
        default=False,
        description=(
            "Refuse every result that is not signed by a verification key, before loading any of "
            "it (UntrustedResultError). For results in storage that others can write to."
        ),
    )
    results_max_decompressed_size: int = Field(
        default=DEFAULT_MAX_DECOMPRESSED_SIZE,
        gt=0,
        description=(
            "The largest size, in bytes, a compressed result may decompress to; larger ones are "
            "refused before memory is allocated for them (a guard against decompression bombs)."
        ),
    )

    def value_of(self, setting: Setting[T]) -> T:
        """This settings object's value of `setting` (a `FERROFLOW_*` setting object)."""
        return setting.value_from(self)

    @property
    def runstore_url_in_force(self) -> str:
        """`runstore_url`, else the database in `home`.

        Derived when read rather than stored, so a new `home` (from the environment or
        `temporary_settings`) moves a default store with it.
        """
        return self.runstore_url or f"{SQLITE_URL_PREFIX}{self.home / DEFAULT_RUNSTORE_FILE_NAME}"

    @field_validator("home", mode="before")
    @classmethod
    def _not_blank(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError(_BLANK_HOME)
        return value

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("local_storage_path", mode="before")
    @classmethod
    def _storage_under_home(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or value == "":
            home = info.data.get("home", DEFAULT_HOME.expanduser())
            return Path(home) / "storage"
        return Path(value).expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: explicit values (temporary_settings) > environment > profile file > defaults.
        return (init_settings, env_settings, _ProfileSource(settings_cls))


SETTING_NAMES: tuple[str, ...] = tuple(Settings.model_fields)


def env_name(field: str) -> str:
    """`results_fsync` -> `FERROFLOW_RESULTS_FSYNC`."""
    return ENV_PREFIX + field.upper()


def field_name(key: str) -> str:
    """The settings field for a key written as `FERROFLOW_RESULTS_FSYNC` or `results_fsync`.

    Raises InvalidSettingError listing the known keys when it names no setting.
    """
    name = key.strip()
    if name.upper().startswith(ENV_PREFIX):
        name = name[len(ENV_PREFIX) :]
    name = name.lower()
    if name not in Settings.model_fields:
        known = ", ".join(env_name(field) for field in SETTING_NAMES)
        raise InvalidSettingError(f"Unknown setting {key!r}. Known settings: {known}.")
    return name


# ---------------------------------------------------------------------------------------------
# Setting objects: each setting as a module-level name, as Prefect 2 code reads them
# (`FERROFLOW_HOME.value()`, `temporary_settings(updates={FERROFLOW_RESULTS_FSYNC: True})`).


class Setting(Generic[T]):
    """One setting, named after its variable: `.name` is "FERROFLOW_HOME", `.value()` its value
    in force now, `.value_from(settings)` its value in a given settings object."""

    __slots__ = ("field", "name")

    def __init__(self, field: str) -> None:
        if field not in Settings.model_fields:
            raise ValueError(f"{field!r} is not a ferroflow setting")
        self.field = field
        self.name = env_name(field)

    def value(self) -> T:
        return self.value_from(get_current_settings())

    def value_from(self, settings: Settings) -> T:
        return getattr(settings, self.field)  # type: ignore[no-any-return]

    @property
    def default(self) -> Any:
        """The value when nothing sets it (None for values derived from another setting)."""
        return Settings.model_fields[self.field].default

    def __bool__(self) -> bool:
        return bool(self.value())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Setting) and other.field == self.field

    def __hash__(self) -> int:
        return hash(self.field)

    def __repr__(self) -> str:
        return f"<{self.name}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Setting, (self.field,))


FERROFLOW_HOME: Setting[Path] = Setting("home")
FERROFLOW_RESULTS_PERSIST_BY_DEFAULT: Setting[bool] = Setting("results_persist_by_default")
FERROFLOW_LOCAL_STORAGE_PATH: Setting[Path] = Setting("local_storage_path")
FERROFLOW_RESULTS_DEFAULT_SERIALIZER: Setting[str] = Setting("results_default_serializer")
FERROFLOW_ASYNC_FETCH_STATE_RESULT: Setting[bool] = Setting("async_fetch_state_result")
FERROFLOW_RESULTS_FSYNC: Setting[bool] = Setting("results_fsync")
FERROFLOW_RESULTS_UNFINISHED_WRITE_MAX_AGE: Setting[float] = Setting("results_unfinished_write_max_age")
FERROFLOW_RESULTS_MAX_BYTES: Setting[int | None] = Setting("results_max_bytes")
FERROFLOW_TASKS_REFRESH_CACHE: Setting[bool] = Setting("tasks_refresh_cache")
FERROFLOW_RUNSTORE_RECORD_RUNS: Setting[bool] = Setting("runstore_record_runs")
FERROFLOW_RUNSTORE_URL: Setting[str | None] = Setting("runstore_url")
FERROFLOW_DEFAULT_RESULT_STORAGE_BLOCK: Setting[str | None] = Setting("default_result_storage_block")
FERROFLOW_RESULTS_SIGNING_KEY: Setting[SecretStr | None] = Setting("results_signing_key")
FERROFLOW_RESULTS_SIGNING_KEY_FILE: Setting[Path | None] = Setting("results_signing_key_file")
FERROFLOW_RESULTS_VERIFICATION_KEYS: Setting[SecretStr | None] = Setting("results_verification_keys")
FERROFLOW_RESULTS_REQUIRE_SIGNATURE: Setting[bool] = Setting("results_require_signature")
FERROFLOW_RESULTS_MAX_DECOMPRESSED_SIZE: Setting[int] = Setting("results_max_decompressed_size")

SETTING_VARIABLES: dict[str, Setting[Any]] = {
    setting.name: setting for setting in globals().values() if isinstance(setting, Setting)
}
"""Every setting object by variable name."""


def _field_of(key: Setting[Any] | str) -> str:
    return key.field if isinstance(key, Setting) else field_name(key)


# ---------------------------------------------------------------------------------------------
# The profile file


def profiles_path(home: Path | None = None) -> Path:
    """`${FERROFLOW_HOME}/profiles.toml` (home taken from the environment when not given).

    The home folder itself cannot come from the profile: it says where the profile is.
    """
    if home is None:
        value = os.environ.get(env_name("home"))
        if value is not None and not value.strip():
            raise InvalidSettingError(_BLANK_HOME)
        home = Path(value or DEFAULT_HOME)
    return home.expanduser() / PROFILES_FILE_NAME


_BLANK_HOME = (
    f"{env_name('home')} is set but blank. Expected the path of ferroflow's folder, e.g. "
    f"{env_name('home')}=~/.ferroflow (a blank value would put settings, saved storages and results "
    f"in whatever folder the program runs from); unset it to use the default {DEFAULT_HOME}."
)


def _read_profiles_document(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise InvalidSettingError(
            f"The profile file {path} is not valid TOML ({exc}). Fix or delete it; "
            "`ferroflow config set`/`unset` rewrite it."
        ) from exc


def active_profile_name(document: Mapping[str, Any] | None = None) -> str:
    """FERROFLOW_PROFILE if set, else the file's `active = "..."`, else "default"."""
    if name := os.environ.get(PROFILE_ENV_NAME):
        return name
    if document is None:
        document = _read_profiles_document(profiles_path())
    active = document.get("active", DEFAULT_PROFILE)
    return active if isinstance(active, str) and active else DEFAULT_PROFILE


def read_profile(path: Path | None = None) -> dict[str, Any]:
    """The active profile's values, keyed by variable name (`FERROFLOW_RESULTS_FSYNC`)."""
    path = path or profiles_path()
    document = _read_profiles_document(path)
    profiles = document.get("profiles", {})
    values = profiles.get(active_profile_name(document), {}) if isinstance(profiles, dict) else {}
    if not isinstance(values, dict):
        raise InvalidSettingError(
            f"In {path}, the profile {active_profile_name(document)!r} is not a table of "
            "FERROFLOW_* = value entries. Fix or delete the file."
        )
    return dict(values)


def write_profile(values: Mapping[str, Any], path: Path | None = None) -> Path:
    """Replace the active profile's values, keeping the other profiles; written atomically."""
    import tomli_w  # only `config set`/`unset` write; keep it off `import ferroflow`

    path = path or profiles_path()
    document = _read_profiles_document(path)
    profile = active_profile_name(document)
    profiles = document.setdefault("profiles", {})
    profiles[profile] = {key: values[key] for key in sorted(values)}
    # A profile chosen by FERROFLOW_PROFILE for this run must not become the file's default.
    document.setdefault("active", DEFAULT_PROFILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(str(path), [tomli_w.dumps(document).encode()])
    _forget_cached_settings()  # seen at once in this process, even inside profile_checked_once()
    return path


def validate_setting(key: str, value: Any) -> tuple[str, Any]:
    """Check one key and value as `config set` receives them; returns (variable name, parsed value).

    Raises InvalidSettingError naming the key and what a valid value looks like.
    """
    field = field_name(key)
    if field == "home":
        raise InvalidSettingError(
            f"{env_name('home')} cannot be set in the profile: it says where the profile file is. "
            f"Set it in the environment instead (export {env_name('home')}=...)."
        )
    info = Settings.model_fields[field]
    field_type: Any = info.annotation or str
    if info.metadata:  # the field's own validators (a run store URL's check, for one)
        field_type = Annotated[(field_type, *info.metadata)]
    try:
        parsed = TypeAdapter(field_type).validate_python(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        expected = _describe_type(info)
        if expected is None:  # the field's validator already says what it accepts
            raise InvalidSettingError(f"Invalid value for {env_name(field)}: {error['msg']}.") from exc
        raise InvalidSettingError(
            f"Invalid value {value!r} for {env_name(field)}: {error['msg']}. Expected {expected}."
        ) from exc
    return env_name(field), parsed


def _describe_type(info: FieldInfo) -> str | None:
    """What a valid value looks like, for errors; None when the field's validator explains it."""
    if info.metadata:
        return None
    if info.annotation is bool:
        return "true or false (also 1/0, yes/no, on/off)"
    if info.annotation is Path:
        return "a folder path"
    if info.annotation is float:
        return "a number of seconds greater than 0"
    return "a string"


def _check_chosen_profile(path: Path) -> None:
    """FERROFLOW_PROFILE, when set, must name a profile of the file (or the default one, which
    exists even before anything is set in it): a misspelt name would silently mean no profile."""
    name = os.environ.get(PROFILE_ENV_NAME)
    if name is None or name == DEFAULT_PROFILE:
        return
    profiles = _read_profiles_document(path).get("profiles", {})
    known = sorted(profiles) if isinstance(profiles, dict) else []
    if name.strip() and name in known:
        return
    what = " is set but blank" if not name.strip() else f"={name!r} names no profile"
    listed = f"its profiles are {', '.join(known)}" if known else "it has no profiles yet"
    raise InvalidSettingError(
        f"{PROFILE_ENV_NAME}{what}. Expected the name of a profile in {path} ({listed}) or "
        f"{DEFAULT_PROFILE!r}. Create the profile with `{PROFILE_ENV_NAME}={name.strip() or '<name>'} "
        f"ferroflow config set KEY=VALUE`, or unset {PROFILE_ENV_NAME} to use the file's active profile."
    )


class _ProfileSource(PydanticBaseSettingsSource):
    """Values from the active profile of `${FERROFLOW_HOME}/profiles.toml`."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads the whole profile at once

    def __call__(self) -> dict[str, Any]:
        path = profiles_path()
        _check_chosen_profile(path)
        values: dict[str, Any] = {}
        for key, value in read_profile(path).items():
            field = key[len(ENV_PREFIX) :].lower() if key.upper().startswith(ENV_PREFIX) else None
            if field is None or field not in Settings.model_fields or field == "home":
                warnings.warn(
                    f"Ignoring {key!r} in {path}: it is not a ferroflow setting that a profile can "
                    f"hold. Remove it with `ferroflow config unset {key}`.",
                    stacklevel=2,
                )
                continue
            values[field] = value
        return values


# ---------------------------------------------------------------------------------------------
# Loading, caching, overriding

_WATCHED_ENV_NAMES: tuple[str, ...] = (
    *(env_name(field) for field in SETTING_NAMES),
    PROFILE_ENV_NAME,
)


@dataclass(frozen=True)
class _CacheEntry:
    environment: tuple[object, ...]
    profile_path: Path
    profile_stamp: tuple[int, int, int] | None
    settings: Settings


_cache: _CacheEntry | None = None
# How many times the profile file was checked, and at which check `_cache` was last confirmed:
# `profile_checked_once` compares them with the count when its block began.
_profile_checks = 0
_cache_confirmed_at = 0
_checked_since: ContextVar[int | None] = ContextVar("ferroflow_profile_checked_since", default=None)


def _forget_cached_settings() -> None:
    global _cache
    _cache = None


def _environment_reader() -> Any:
    """A function returning the watched variables' current values, as cheaply as possible.

    `os.environ.get` encodes each key and decodes each value (about 0.7 us per name); reading
    the mapping's underlying dict with pre-encoded keys gives the same answer for change
    detection at a tenth of the cost. Falls back to the public API where that dict is absent.
    """
    data = getattr(os.environ, "_data", None)
    encodekey = getattr(os.environ, "encodekey", None)
    if isinstance(data, dict) and encodekey is not None:
        keys = tuple(encodekey(name) for name in _WATCHED_ENV_NAMES)
        return lambda: tuple(map(data.get, keys))
    return lambda: tuple(map(os.environ.get, _WATCHED_ENV_NAMES))


_watched_environment = _environment_reader()
_overrides: list[Settings] = []


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def load_settings() -> Settings:
    """Parse the settings from the environment and the profile file now (no cache)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise InvalidSettingError(_explain_load_errors(exc)) from exc


def _explain_load_errors(exc: ValidationError) -> str:
    profile = profiles_path()

    def source(name: str) -> str:
        return "the environment" if name in os.environ else f"the profile file {profile}"

    return f"Invalid ferroflow settings: {_describe_errors(exc, source)}. Fix or unset them."


def _describe_errors(exc: ValidationError, source: Callable[[str], str] | None = None) -> str:
    """`FERROFLOW_X='bad' (from ...): reason` for each invalid value."""
    problems = []
    for error in exc.errors():
        name = env_name(str(error["loc"][0])) if error["loc"] else "settings"
        where = f" (from {source(name)})" if source else ""
        value = error.get("input")
        if isinstance(value, str):  # a URL's password is never shown
            value = redact_url(value)
        problems.append(f"{name}={value!r}{where}: {error['msg']}")
    return "; ".join(problems)


def get_current_settings() -> Settings:
    """The settings in force now: the innermost `temporary_settings`, else environment + profile.

    Cheap: a cached value is returned unless a FERROFLOW_* variable or the profile file changed.
    Inside `profile_checked_once()` the profile file is checked by the first call only.
    """
    if _overrides:
        return _overrides[-1]
    global _cache, _profile_checks, _cache_confirmed_at
    environment = _watched_environment()
    entry = _cache
    if entry is not None and entry.environment == environment:
        since = _checked_since.get()
        if since is not None and _cache_confirmed_at > since:
            return entry.settings
        path = entry.profile_path
    else:
        path = profiles_path()
    stamp = _file_stamp(path)
    if entry is None or entry.environment != environment or entry.profile_stamp != stamp:
        entry = _CacheEntry(environment, path, stamp, load_settings())
        _cache = entry
    _profile_checks += 1
    _cache_confirmed_at = _profile_checks
    return entry.settings


@contextlib.contextmanager
def profile_checked_once() -> Iterator[None]:
    """Inside the block (and the threads and tasks that inherit its context), the profile file is
    checked for changes once, by the first `get_current_settings()`, instead of on every call (a
    `stat`, about 1.5 µs, where a cached task call costs tens). FERROFLOW_* variables are still
    compared on every call, `temporary_settings` still wins, and `write_profile` in this process
    takes effect at once; a profile changed by another process is seen by the next block.

    Every flow run holds it: its settings follow the profile as it was when the run started, as
    in Prefect 2 (which read the profile once per process)."""
    token = _checked_since.set(_profile_checks)
    try:
        yield
    finally:
        _checked_since.reset(token)


@contextlib.contextmanager
def temporary_settings(
    updates: Mapping[Setting[Any] | str, Any] | None = None,
    set_defaults: Mapping[Setting[Any] | str, Any] | None = None,
    restore_defaults: Iterable[Setting[Any] | str] | None = None,
    **changes: Any,
) -> Iterator[Settings]:
    """Override settings inside a `with` block (tests, scripts); they win over env and profile.

    Two forms, which can be mixed:
    - keywords: field names (`results_fsync=True`) or variable names (`FERROFLOW_RESULTS_FSYNC=True`);
    - Prefect 2's: `updates={FERROFLOW_RESULTS_FSYNC: True}` sets values; `set_defaults={...}`
      sets values only where neither the environment, the profile nor an enclosing block set
      one; `restore_defaults={FERROFLOW_HOME}` puts settings back to their defaults, ignoring
      the environment and the profile. Keys are setting objects or names.

    The override is process-wide (seen by worker threads too) and undone when the block exits.
    """
    current = get_current_settings()
    values = current.model_dump()
    explicit = set(current.model_fields_set)
    restored = {_field_of(key) for key in restore_defaults or ()}
    for field in restored:
        values[field] = Settings.model_fields[field].default
    explicit -= restored
    defaults = {_field_of(key): value for key, value in (set_defaults or {}).items()}
    defaults = {field: value for field, value in defaults.items() if field not in explicit}
    updated = {_field_of(key): value for key, value in [*(updates or {}).items(), *changes.items()]}
    changed = {**defaults, **updated}
    home_changed = "home" in changed or "home" in restored
    if home_changed and "local_storage_path" not in changed and "local_storage_path" not in restored:
        # A storage path that only followed the old home follows the new one.
        if current.local_storage_path == current.home / "storage":
            values["local_storage_path"] = None
    values.update(changed)
    try:
        validated = Settings(**values)
    except ValidationError as exc:
        raise InvalidSettingError(f"Invalid temporary_settings: {_describe_errors(exc)}.") from exc
    # Which settings were given a value (not left at a default) decides what a nested
    # `set_defaults` may change.
    settings = Settings.model_construct(_fields_set=explicit | set(changed), **dict(validated))
    _overrides.append(settings)
    try:
        yield settings
    finally:
        _overrides.remove(settings)


_adopted: tuple[Settings, Settings] | None = None
"""The settings last given to `adopted_settings`, and the override made of them."""


@contextlib.contextmanager
def adopted_settings(settings: Settings) -> Iterator[Settings]:
    """`temporary_settings` with every setting taken from `settings` (those in force in another
    process, such as the flow run's, sent with a task run's request).

    The override made of the same settings is validated once and reused (settings are frozen):
    a worker process executes many task runs of one flow run, and validating the settings
    again for each would cost more than the run's own bookkeeping.
    """
    global _adopted
    entry = _adopted
    if entry is not None and entry[0] == settings:
        override = entry[1]
    else:
        with temporary_settings(**settings.model_dump()) as override:
            pass
        _adopted = (settings, override)
    _overrides.append(override)
    try:
        yield override
    finally:
        _overrides.remove(override)


def setting_sources() -> dict[str, Source]:
    """Where each setting in force comes from (for `ferroflow config view`)."""
    if _overrides:
        base = load_settings()
        current = _overrides[-1]
    else:
        base = current = get_current_settings()
    profile = {key.upper() for key in read_profile()}
    sources: dict[str, Source] = {}
    for field in SETTING_NAMES:
        name = env_name(field)
        if getattr(current, field) != getattr(base, field):
            sources[field] = "temporary"
        elif name in os.environ:
            sources[field] = "env"
        elif name in profile:
            sources[field] = "profile"
        else:
            sources[field] = "default"
    return sources


__all__ = [
    "adopted_settings",
    "ENV_PREFIX",
    "FERROFLOW_ASYNC_FETCH_STATE_RESULT",
    "FERROFLOW_DEFAULT_RESULT_STORAGE_BLOCK",
    "FERROFLOW_HOME",
    "FERROFLOW_LOCAL_STORAGE_PATH",
    "FERROFLOW_RESULTS_DEFAULT_SERIALIZER",
    "FERROFLOW_RESULTS_FSYNC",
    "FERROFLOW_RESULTS_MAX_BYTES",
    "FERROFLOW_RESULTS_MAX_DECOMPRESSED_SIZE",
    "FERROFLOW_RESULTS_PERSIST_BY_DEFAULT",
    "FERROFLOW_RESULTS_REQUIRE_SIGNATURE",
    "FERROFLOW_RESULTS_SIGNING_KEY",
    "FERROFLOW_RESULTS_SIGNING_KEY_FILE",
    "FERROFLOW_RESULTS_UNFINISHED_WRITE_MAX_AGE",
    "FERROFLOW_RESULTS_VERIFICATION_KEYS",
    "FERROFLOW_RUNSTORE_RECORD_RUNS",
    "FERROFLOW_RUNSTORE_URL",
    "FERROFLOW_TASKS_REFRESH_CACHE",
    "MEMORY_RUNSTORE_URL",
    "RUNSTORE_URL_FORMS",
    "SETTING_NAMES",
    "SETTING_VARIABLES",
    "POSTGRESQL_URL_PREFIXES",
    "SQLITE_URL_PREFIX",
    "STORAGE_SLUG_FORM",
    "Setting",
    "Settings",
    "active_profile_name",
    "check_runstore_url",
    "is_postgresql_url",
    "redact_url",
    "env_name",
    "field_name",
    "get_current_settings",
    "load_settings",
    "profile_checked_once",
    "profiles_path",
    "read_profile",
    "setting_sources",
    "temporary_settings",
    "validate_setting",
    "write_profile",
]
