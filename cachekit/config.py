"""Configuration models and loading from files, mappings or models.

:func:`load_config` is the one door: it accepts a :class:`CacheConfig`, a mapping, a
policy kind name, or a path to a YAML, TOML or JSON file, and turns every problem into one
:class:`~cachekit.errors.ConfigError` that names the path of each bad value
(``policy.interval``) and, for a bad name, the valid choices.
"""

from __future__ import annotations

import codecs
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    WithJsonSchema,
    create_model,
    field_validator,
)

from cachekit.engine.ranks import GROUP_CHOICES, check_process_group
from cachekit.errors import ConfigError, did_you_mean, listing
from cachekit.plugin_manager import load_plugins
from cachekit.policies.base import Policy, parse_policy, policy_kinds
from cachekit.policies.uniform import UniformPolicy
from cachekit.reuse.spec import ForecastSpec

CONFIG_SUFFIXES = (".yaml", ".yml", ".toml", ".json")
"""The suffixes of config files :func:`read_mapping` reads."""


class _PolicyErrors(ConfigError):
    """Errors inside one policy mapping, kept with their paths for the final message."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{path}: {message}" for path, message in errors))


def _policy_field(value: Any) -> Policy:
    try:
        return parse_policy(value)
    except ValidationError as error:
        raise _PolicyErrors([(_dotted(e["loc"]), _describe(e)) for e in error.errors()]) from None
    except ConfigError as error:
        path = "kind" if isinstance(value, (Mapping, str)) else ""
        raise _PolicyErrors([(path, str(error))]) from None


class DeclaredRegion(BaseModel):
    """A region declared by module paths, for any ``nn.Module`` (no plugin needed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Name used in 'regions', stats and region_policies.")
    entry: str = Field(min_length=1, description="Dotted path of the first module of the span, e.g. 'blocks.2'.")
    exit: str | None = Field(
        None, description="Dotted path of the last module, a sibling of entry (default: entry itself)."
    )
    mode: Literal["output", "residual"] = Field("residual", description="Reuse the stored output or residual.")
    inner: Literal["passthrough", "replay"] = Field(
        "passthrough", description="What modules between entry and exit return on reuse."
    )


class CacheConfig(BaseModel):
    """What to cache and when: the policy and the regions it applies to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: SerializeAsAny[Policy] = Field(
        default_factory=UniformPolicy, description="The refresh policy of every selected region."
    )
    regions: tuple[str, ...] | None = Field(
        None,
        description="Names of the regions to cache; default: the declared regions, else the adapter's first.",
    )
    declare: tuple[DeclaredRegion, ...] = Field((), description="Regions declared by module paths.")
    region_policies: dict[str, SerializeAsAny[Policy]] = Field(
        default_factory=dict, description="Per-region policy overrides, by region name."
    )
    denoisers: tuple[str, ...] | None = Field(
        None, description="Which denoisers of a pipeline to cache, by name (default: all found)."
    )
    denoiser_policies: dict[str, SerializeAsAny[Policy]] = Field(
        default_factory=dict, description="Per-denoiser policy overrides, by denoiser name ('transformer_2')."
    )
    num_steps: int | None = Field(
        None, strict=True, ge=1, description="Steps per generation for a bare model with no scheduler."
    )
    forecast: ForecastSpec = Field(
        default_factory=lambda: ForecastSpec(name="none"),
        description=(
            "What reuse steps serve: 'none' the stored result as computed (DeepCache, FORA); 'linear' "
            "its extrapolation from the last two refreshes; {name: taylor, order: 1-3} the polynomial "
            "through the last order+1 refreshes (TaylorSeer; keeps order+1 results); {name: hermite, "
            "order: 1-3, scale: 0-0.707} the same damped at long gaps (HiCache); or a forecaster a plugin registers."
        ),
    )
    process_group: Annotated[Any, WithJsonSchema({"type": "string", "enum": list(GROUP_CHOICES)})] = Field(
        "auto",
        description=(
            "Ranks that agree on every decision of a sharded denoiser (their probe statistics are summed): "
            "'auto' the mesh diffusers' enable_parallelism or DTensor parameters shard it over, none otherwise; "
            "'world' every rank; 'none' each rank alone; or a torch.distributed ProcessGroup (Python only)."
        ),
    )

    static: bool = Field(
        False,
        description=(
            "Take every decision before the denoiser's forward runs, for torch.compile: each path (refresh, "
            "reuse) is one graph and fullgraph=True compiles. Needs policies with refresh steps fixed in "
            "advance (uniform, nonuniform)."
        ),
    )

    _policy = field_validator("policy", mode="before")(lambda cls, value: _policy_field(value))
    _regions = field_validator("regions", mode="before")(lambda cls, value: region_names(value))
    _process_group = field_validator("process_group", mode="before")(lambda cls, value: check_process_group(value))

    @field_validator("region_policies", "denoiser_policies", mode="before")
    @classmethod
    def _policy_map(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        policies, errors = {}, []
        for name, policy in value.items():
            try:
                policies[name] = _policy_field(policy)
            except _PolicyErrors as error:
                errors += [(".".join(filter(None, (str(name), path))), message) for path, message in error.errors]
        if errors:
            raise _PolicyErrors(errors)
        return policies

    def policy_for(self, denoiser: str, region: str) -> Policy:
        """The policy of ``region`` in ``denoiser``: region override, denoiser override, default."""
        return self.region_policies.get(region) or self.denoiser_policies.get(denoiser) or self.policy


def region_names(value: Any, declare: str = "declare") -> Any:
    """``value`` unchanged, unless it lists a mapping: a region given by module paths, which
    belongs under ``declare`` (the key as the config spells it) and is named in ``regions``."""
    if not isinstance(value, (list, tuple)):
        return value
    given = next((item for item in value if isinstance(item, Mapping)), None)
    if given is None:
        return value
    spec = ", ".join(f"{key}: {item}" for key, item in given.items())
    name = given.get("name", "NAME")
    raise ValueError(
        f"regions lists names only; a region given by module paths goes under '{declare}' and is named in "
        f"'regions': {declare}: [{{{spec}}}] and regions: [{name}]"
    )


ModelT = TypeVar("ModelT", bound=BaseModel)


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(root)"


def _describe(error: Mapping[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"unknown key{_suggest_key(str(error['loc'][-1]))}"
    elif "input" in error and error["type"] not in ("missing",) and not isinstance(error["input"], Mapping):
        message += f" (got {error['input']!r})"
    return message


def _known_keys() -> set[str]:
    models: list[type[BaseModel]] = [CacheConfig, DeclaredRegion, *policy_kinds().values()]
    return {name for model in models for name in model.model_fields}


def _suggest_key(key: str) -> str:
    return did_you_mean(key, _known_keys()).replace(" (", "; ").rstrip(")")


def _flatten(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        inner = item.get("ctx", {}).get("error")
        if isinstance(inner, _PolicyErrors):
            lines += [
                f"{'.'.join(filter(None, (_dotted(item['loc']), path)))}: {message}" for path, message in inner.errors
            ]
        else:
            lines.append(f"{_dotted(item['loc'])}: {_describe(item)}")
    return lines


def validate(model: type[ModelT], data: Any, source: str = "config") -> ModelT:
    """Validate ``data`` as ``model``, raising one :class:`ConfigError` listing every problem."""
    try:
        return model.model_validate(data)
    except RecursionError:
        raise ConfigError(f"invalid {model.__name__} in {source}: it nests too deeply to be a config") from None
    except ValidationError as error:
        lines = "\n  ".join(_flatten(error))
        raise ConfigError(f"invalid {model.__name__} in {source}:\n  {lines}") from None


def _decode(path: Path) -> str:
    """The file's text: UTF-8 (a BOM allowed), or UTF-16/32 with a BOM; anything else is a clear error."""
    data = path.read_bytes()
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(encoding)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text (byte {error.start} is {data[error.start]:#04x}); "
            "save it as UTF-8"
        ) from None


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``), TOML or JSON file into a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = _decode(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {str(path)!r}: unknown suffix {suffix!r}; use .yaml, .yml, .toml or .json")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"config file {str(path)!r} is not valid {suffix[1:].upper()}: {error}") from None
    except RecursionError:
        raise ConfigError(f"config file {str(path)!r} nests too deeply to be a config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top, got {type(data).__name__}")
    return data


def load_config(source: CacheConfig | Mapping[str, Any] | str | Path | Policy | None = None) -> CacheConfig:
    """A :class:`CacheConfig` from a model, a mapping, a policy, a policy kind or a file path.

    ``None`` gives the default (``uniform`` with interval 3 on the adapter's default region).
    Plugins are loaded first (:func:`~cachekit.plugin_manager.load_plugins`), so their policy
    kinds, probes and forecasters are known.
    """
    load_plugins()
    if source is None:
        return CacheConfig()
    if isinstance(source, CacheConfig):
        return source
    if isinstance(source, Policy):
        return CacheConfig(policy=source)
    if isinstance(source, Mapping):
        return validate(CacheConfig, dict(source))
    if isinstance(source, str) and source in policy_kinds():
        return validate(CacheConfig, {"policy": {"kind": source}}, f"policy kind {source!r}")
    if isinstance(source, str) and _names_a_kind(source):
        kinds = policy_kinds()
        raise ConfigError(
            f"unknown policy kind {source!r}{did_you_mean(source, kinds)}; known kinds: {listing(kinds)}. "
            f"No file {source!r} exists either: a config file is given by its path, ending in "
            f"{', '.join(CONFIG_SUFFIXES)}"
        )
    if isinstance(source, (str, Path)):
        return validate(CacheConfig, read_mapping(source), repr(str(source)))
    raise ConfigError(
        f"cannot read a cachekit config from {type(source).__name__}; give a CacheConfig, a mapping, "
        "a policy, a policy kind name or a path to a .yaml/.toml/.json file"
    )


def _names_a_kind(source: str) -> bool:
    """Whether ``source`` reads as a policy kind name rather than a file path: no such file, no
    path separator and no config file suffix."""
    return (
        not Path(source).exists()
        and not any(separator in source for separator in ("/", "\\"))
        and Path(source).suffix.lower() not in CONFIG_SUFFIXES
    )


def config_schema() -> dict[str, Any]:
    """JSON schema of :class:`CacheConfig`, policies shown as the union of registered kinds."""
    union = Annotated[Union[tuple(policy_kinds().values())], Field(discriminator="kind")]  # noqa: UP007
    fields = CacheConfig.model_fields
    schema_model = create_model(
        "CacheConfig",
        __base__=CacheConfig,
        policy=(union, fields["policy"]),
        region_policies=(dict[str, union], fields["region_policies"]),  # type: ignore[valid-type]
        denoiser_policies=(dict[str, union], fields["denoiser_policies"]),  # type: ignore[valid-type]
    )
    return schema_model.model_json_schema()
