"""The schema machinery of upt-keras' YAML files: typed sections on pydantic, checked values, and one-line messages.

A file's schema is a tree of `Section`s (unknown keys rejected, values checked on assignment too); `validated(root,
data)` builds it and turns pydantic's errors into one `ConfigError`. Each error is reported at pydantic's own
location as a dotted key, with pydantic's own message and the value given: `<dotted key>: <message>, got <value>`;
an unknown key names the nearest valid key (`did you mean ...?`). The training config (`upt_keras.config`) and the
search space (`upt_keras.tuning.search_space`) are both built on it. Checks that pydantic's types do not express
raise `leaf_error(text)` (reported as `<dotted key>: <text>`) or `config_error(text)` (the message is complete).

This module imports no deep-learning framework.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import AfterValidator, AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Field, Strict
from pydantic import ValidationError, model_validator
from pydantic_core import PydanticCustomError


class ConfigError(ValueError):
    """Raised for any invalid configuration: unknown key, wrong type, out-of-range value, unreadable file."""


# --------------------------------------------------------------------------------------------------------------------
# Value types: pydantic's own (strict, so that true is no number and 1 no bool) where they serve; the few checks they
# do not express raise a "leaf" error (reported after the dotted key) or a "config" error (the message is complete).
# --------------------------------------------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def got(value: Any) -> str:
    return "got null" if value is None else f"got {type_name(value)} {fmt(value)}"


def leaf_error(text: str, key: str = "") -> PydanticCustomError:
    """`key`: the sub-key `text` is about (a model validator's error is located at its model)."""
    return PydanticCustomError("leaf", "{text}", {"text": text, "key": key})


def config_error(text: str) -> PydanticCustomError:
    return PydanticCustomError("config", "{text}", {"text": text})


_FLOAT_STRING = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def float_string(value: Any) -> Any:
    """A number written as a string (YAML 1.1 reads `1e-5` as one) as a float; anything else unchanged."""
    if isinstance(value, str) and _FLOAT_STRING.match(value.strip()):
        return float(value)
    return value


def number(value: Any) -> Any:
    """An int or a finite float, kept as given (a union of pydantic's types would report one error per member)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise leaf_error(f"must be a number, {got(value)}")
    if not math.isfinite(value):
        raise leaf_error(f"must be a finite number, got {value}")
    return value


def not_blank(value: str) -> str:
    if not value.strip():
        raise leaf_error(f"must be a non-empty string, got {fmt(value)}")
    return value


def one_of(*choices: str) -> Any:
    """A string among `choices` (pydantic's literal: its message lists them)."""
    return Literal[choices]


def bool_or(*choices: str) -> Any:
    """true, false, or a string among `choices` (one message, not one per member of a union)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, str) and value in choices):
            return value
        raise leaf_error(f"must be one of true | false | {' | '.join(choices)}, {got(value)}")

    return Annotated[Union[bool, str], BeforeValidator(check)]


Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
Float = Annotated[float, BeforeValidator(float_string), Strict(), AllowInfNan(False)]
Text = Annotated[str, Strict(), AfterValidator(not_blank)]
Number = Annotated[Union[int, float], BeforeValidator(number), Field(gt=0)]
NumberList = Annotated[list[Number], Field(min_length=1)]


class Section(BaseModel):
    """A mapping of known keys; null or a missing section takes every default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, data: Any) -> Any:
        return {} if data is None else data

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise ConfigError(message(exc, type(self))) from None


# --------------------------------------------------------------------------------------------------------------------
# Messages: pydantic's errors as "<dotted key> <what is wrong>, got <value>"
# --------------------------------------------------------------------------------------------------------------------


def _model_in(annotation: Any) -> type[Section] | None:
    """The section a field holds, looking through Optional, Annotated and unions (None: a plain value)."""
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation
    return next(filter(None, map(_model_in, get_args(annotation))), None)


def sections(cls: type[Section]) -> dict[str, type[Section]]:
    return {name: model for name, f in cls.model_fields.items() if (model := _model_in(f.annotation))}


def _all_paths(cls: type[Section], prefix: str = "") -> list[str]:
    paths = []
    for name in cls.model_fields:
        paths.append(prefix + name)
        if name in sections(cls):
            paths.extend(_all_paths(sections(cls)[name], prefix + name + "."))
    return paths


def _suggest(dotted: str, local_names: list[str], prefix: str, root: type[Section]) -> str:
    """Nearest valid key: first among siblings, then (a key placed in the wrong section, e.g. `lambda_inv_enc` at
    top level) among the last components of every dotted path in the schema. The whole dotted key is not compared:
    its shared prefix alone makes any key of the same section look close."""
    last = dotted.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(last, local_names, n=1, cutoff=0.6)
    if close:
        return prefix + close[0]
    by_last = {p.rsplit(".", 1)[-1]: p for p in _all_paths(root)}
    close = difflib.get_close_matches(last, list(by_last), n=1, cutoff=0.8)
    return by_last[close[0]] if close else ""


def unknown_key(dotted: str, cls: type[Section], prefix: str, root: type[Section]) -> str:
    local_names = list(cls.model_fields)
    hint = _suggest(dotted, local_names, prefix, root)
    if hint:
        return f"{dotted}: unknown key (did you mean '{hint}'?)"
    return f"{dotted}: unknown key (valid keys here: {', '.join(prefix + n for n in local_names)})"


def _located(loc: tuple, root: type[Section]) -> tuple[str, type[Section] | None]:
    """The dotted key of an error location (a union's tags left out), and the section holding its last key."""
    path, cls = "", root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif cls is None or part in cls.model_fields:
            path += f".{part}"
            cls = sections(cls).get(part) if cls else None
    return path.lstrip("."), cls


def _one_message(err: dict, root: type[Section]) -> str:
    """`<dotted key>: <message>` at pydantic's location of the error; pydantic's own errors name the value given."""
    loc, kind = err["loc"], err["type"]
    if kind == "config":
        return err["msg"]
    if kind == "extra_forbidden":
        prefix, cls = _located(loc[:-1], root)
        prefix = prefix + "." if prefix else ""
        return unknown_key(f"{prefix}{loc[-1]}", cls, prefix, root)
    path = _located(loc, root)[0]
    if kind == "leaf":
        key = err["ctx"]["key"]
        path = f"{path}.{key}".lstrip(".") if key else path
        return f"{path or 'the configuration'}: {err['msg']}"
    return f"{path or 'the configuration'}: {err['msg']}, {got(err.get('input'))}"


def message(exc: ValidationError, root: type[Section]) -> str:
    return "; ".join(_one_message(err, root) for err in exc.errors())


def validated(cls: type[Section], data: Any) -> Section:
    """`cls` built from `data`; pydantic's errors as one ConfigError."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(message(exc, cls)) from None
