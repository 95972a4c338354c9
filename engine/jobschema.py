"""The job spec's schema, read from ``TextureJob``'s field metadata: the one source of truth.

Every ``TextureJob`` field is declared with :func:`spec_field`, whose metadata says what the
field means (``help``), what it allows (``choices``, ``lo``/``hi``) and how the command line
spells it (``flag``, ``cli``). From that one declaration this module derives:

- the validation of a value (:func:`check_value`, called by ``TextureJob.__post_init__``);
- the CLI's job flags with their help text and defaults (:func:`add_job_arguments`,
  :func:`job_overrides`; ``texbridge texture`` and ``texbridge batch``);
- the HTTP edge's pydantic model of the spec (``server/schemas.py`` builds it from
  :func:`fields`), and so the spec's schema in ``docs/openapi.json``.

Adding a field to ``TextureJob`` (with ``spec_field``) therefore adds its flag, its schema entry
and its ``job.json`` entry with no other edit (``tests/engine/test_jobschema.py`` checks it).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any

from engine.errors import SpecError, parse_choice

def spec_field(default: Any = dataclasses.MISSING, *, help: str, default_text: str | None = None,
               choices: type[Enum] | tuple[str, ...] | None = None, lo: float | None = None,
               hi: float | None = None, lo_open: bool = False, flag: str | None = None,
               cli: bool = True, negate_flag: str | None = None) -> Any:
    """A ``TextureJob`` field with its schema.

    help: one line for ``--help`` and the OpenAPI description (without the default).
    default_text: how ``--help`` words the default when it is not the literal value
        (e.g. ``None`` meaning "the recipe's").
    choices: a closed Enum (values are the allowed words) or a tuple of allowed strings.
    lo / hi: inclusive numeric range (``lo_open``: ``lo`` itself excluded).
    flag: the CLI option's name when it differs from the field's (``cfg`` for ``cfg_scale``).
    cli: ``False`` for fields the commands take their own way (``prompt``, ``mesh``).
    negate_flag: for a boolean defaulting to ``True``, the ``--no-...`` flag that sets it false.
    """
    meta = dict(help=help, default_text=default_text, choices=choices, lo=lo, hi=hi, lo_open=lo_open,
                flag=flag, cli=cli, negate_flag=negate_flag)
    return dataclasses.field(default=default, metadata={"spec": meta})


@dataclass(frozen=True)
class FieldSchema:
    """One spec field as the generators see it.

    kind: ``int`` | ``float`` | ``str`` | ``bool``; nullable: ``None`` is allowed (and means a
    derived default); choices: allowed words (``enum``: the Enum they come from, if any).
    """

    name: str
    kind: type
    nullable: bool
    default: Any
    help: str
    default_text: str | None
    choices: tuple[str, ...] | None
    enum: type[Enum] | None
    lo: float | None
    hi: float | None
    lo_open: bool
    flag: str
    cli: bool
    negate_flag: str | None

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    @property
    def description(self) -> str:
        """The help line, with what ``null`` means for a nullable field (HTTP API docs)."""
        return self.help if self.default_text is None or not self.nullable else f"{self.help} (null: {self.default_text})"

    @property
    def default_value(self) -> Any:
        """The default in its JSON form (an Enum's value)."""
        return self.default.value if isinstance(self.default, Enum) else self.default

    def default_words(self) -> str:
        if self.default_text is not None:
            return self.default_text
        value = self.default.value if isinstance(self.default, Enum) else self.default
        return str(value).lower() if isinstance(value, bool) else str(value)

    def range_words(self) -> str:
        def num(v: float) -> str:
            return str(v) if isinstance(v, int) else f"{v:g}"

        lo = "" if self.lo is None else ("(" + num(self.lo) if self.lo_open else num(self.lo))
        hi = "" if self.hi is None else num(self.hi)
        return f"({lo[1:]}, {hi}]" if self.lo_open else f"{lo}..{hi}"


@functools.cache  # every TextureJob construction validates through it
def fields(job_cls: type) -> tuple[FieldSchema, ...]:
    """The schema of every field of ``job_cls`` (a ``TextureJob``), in declaration order."""
    hints = typing.get_type_hints(job_cls)
    out = []
    for f in dataclasses.fields(job_cls):
        meta = f.metadata.get("spec")
        if meta is None:
            raise TypeError(f"{job_cls.__name__}.{f.name} is not declared with spec_field()")
        kind, nullable = _kind(hints[f.name])
        choices, enum = meta["choices"], None
        if isinstance(choices, type) and issubclass(choices, Enum):
            enum, choices = choices, tuple(str(m.value) for m in choices)
        out.append(FieldSchema(
            name=f.name, kind=kind, nullable=nullable, default=f.default, help=meta["help"],
            default_text=meta["default_text"], choices=choices, enum=enum, lo=meta["lo"], hi=meta["hi"],
            lo_open=meta["lo_open"], flag=meta["flag"] or f.name, cli=meta["cli"], negate_flag=meta["negate_flag"]))
    return tuple(out)


def _kind(hint: Any) -> tuple[type, bool]:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    nullable = type(None) in typing.get_args(hint)
    t = args[0] if nullable and len(args) == 1 else hint
    if isinstance(t, type) and issubclass(t, Enum):
        return str, nullable
    if t in (int, float, str, bool):
        return t, nullable
    raise TypeError(f"unsupported spec field type {hint!r}")


def check_value(fs: FieldSchema, value: Any) -> Any:
    """``value`` validated against ``fs`` (an Enum member for Enum fields); else ``SpecError``."""
    if value is None:
        if fs.nullable:
            return None
        raise SpecError(f"{fs.name} must not be null")
    if fs.enum is not None:
        return parse_choice(fs.enum, value, fs.name)
    if fs.choices is not None:
        if value not in fs.choices:
            raise SpecError(f"{fs.name}={value!r} is not allowed; allowed: {', '.join(fs.choices)}")
        return value
    null = " (or null for the recipe's)" if fs.nullable else ""
    if fs.kind is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{fs.name}={value!r} must be true or false")
        return value
    if fs.kind is str:
        if not isinstance(value, str):
            raise SpecError(f"{fs.name} must be a string{null}")
        return value
    if fs.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise SpecError(f"{fs.name}={value!r} must be an integer in {fs.range_words()}")
    if fs.kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{fs.name}={value!r} must be a number in {fs.range_words()}")
        value = float(value)
    low_bad = fs.lo is not None and (value <= fs.lo if fs.lo_open else value < fs.lo)
    if low_bad or (fs.hi is not None and value > fs.hi):
        raise SpecError(f"{fs.name}={value} is out of range; allowed: {fs.range_words()}{null}")
    return value


# -- the command line ---------------------------------------------------------------------

def add_job_arguments(p: argparse.ArgumentParser, job_cls: type) -> None:
    """One option per CLI field of ``job_cls``; none has an argparse default (``None`` = not given)."""
    g = p.add_argument_group("job (defaults come from --recipe; see engine/job.py)")
    for fs in fields(job_cls):
        if not fs.cli:
            continue
        if fs.kind is bool:
            g.add_argument(f"--{fs.negate_flag.replace('_', '-')}", dest=fs.flag, action="store_false",
                           default=None, help=_escape(f"{fs.help}: off (default on)"))
            continue
        allowed = "" if fs.lo is None and fs.hi is None else f"{fs.range_words()}; "
        kw: dict[str, Any] = {"help": _escape(f"{fs.help} ({allowed}default: {fs.default_words()})")}
        if fs.choices is not None:
            kw.update(choices=list(fs.choices), type=str.lower if fs.enum is not None else str)
        else:
            kw.update(type=fs.kind, metavar={int: "N", float: "X", str: "TEXT"}[fs.kind])
        g.add_argument(f"--{fs.flag.replace('_', '-')}", dest=fs.flag, **kw)


def _escape(text: str) -> str:
    return text.replace("%", "%%")  # argparse %-formats help strings


def job_overrides(args: argparse.Namespace, job_cls: type) -> dict[str, Any]:
    """The ``job_cls`` fields given on the command line, by field name."""
    return {fs.name: getattr(args, fs.flag) for fs in fields(job_cls)
            if fs.cli and getattr(args, fs.flag, None) is not None}
