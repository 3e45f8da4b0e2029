r"""Samplers, losses and integrators that torchebm 0.8.9 pickled whole keep working here.

``torch.save(sampler)`` pickles the object's ``__dict__``; unpickling restores it without
calling ``__init__``, so an object saved by 0.8.9 would carry 0.8.9's attributes and fail
on first use. The classes set ``__setstate__ = accept_089_pickle(marker, overrides)``. A
state without ``marker`` (an attribute this version always sets) is 0.8.9's; the object
is then rebuilt:

1. the constructor of its first TorchEBM class runs with the arguments read back from
   the old attributes of the same names (or of the names 0.8.9 used: ``_norm``,
   ``prediction_type``, ...), schedulers by their names, the model, sampler and
   integrator as the unpickled objects themselves, dtype and device from the probe
   buffer, corrected by ``overrides`` where 0.8.9 stored an argument in another form;
2. each old submodule replaces the new one of the same name and class, so objects shared
   in the pickle (a model held by a loss and by its sampler) stay shared;
3. the other parameters and buffers load with ``load_state_dict(assign=True)`` (whose
   pre-hooks rename 0.8.9 keys; tensors this version has no place for are dropped);
4. the train/eval flags, frozen parameters, mixed-precision settings and, for a user's
   subclass, the attributes and submodules it added are carried over.

So the object equals a freshly constructed one holding the same weights. Hooks a user
registered on the 0.8.9 object are not carried over.

Example:
    >>> class MySampler(BaseSampler):  # doctest: +SKIP
    ...     __setstate__ = accept_089_pickle("nan_policy")
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from torchebm.core import warn_once
from torchebm.core._module import warn_user
from torchebm.core.errors import ConfigurationError, check_probability

__all__ = [
    "OMIT",
    "ConditioningAttrs089",
    "Hooks089",
    "Old089",
    "accept_089_pickle",
    "overridden",
    "tableau_from_properties",
]

#: An ``overrides`` value meaning "do not pass this argument" (its default applies).
OMIT: Any = object()

#: constructor argument -> the 0.8.9 attribute that held it under another name
_OLD_NAMES = {
    "norm": "_norm",
    "prediction": "prediction_type",
    "functional_model": "_functional_model",
    "check_conditioning": "_condition_check_pending",  # False once checked, or never
}
_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_PRECISION = ("use_mixed_precision", "autocast_available", "_amp_dtype")


def overridden(obj: Any, name: str, base: type) -> bool:
    """Whether ``obj.<name>`` is not ``base``'s method: a subclass's override or a function set
    on the instance (the fast paths that bypass a public hook yield to one)."""
    return getattr(getattr(obj, name), "__func__", None) is not getattr(base, name)


class Hooks089:
    """Mixin of the library classes that torchebm 0.8.9 users subclassed, for the hooks whose
    0.8.9 overrides this version would otherwise ignore in silence.

    A subclass that defines a name of `_renamed_hooks` (0.8.9's name -> the hook called now)
    and not the new one (itself or through a mixin before the library class in its MRO)
    has its method serve as the new one; one whose parameters have other
    names than the new hook's gets the arguments by position (0.8.9 passed them so; the
    library passes some by keyword, e.g. ``model_kwargs=``). A subclass that defines a name
    of `_retired_hooks` (a 0.8.9 hook that nothing calls now -> what replaces it) gets a
    `UserWarning` at its definition: its override would have no effect.
    """

    _renamed_hooks: ClassVar[dict[str, str]] = {}
    _retired_hooks: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        mro = cls.__mro__
        for old, new in cls._renamed_hooks.items():
            source, target = _definer(cls, old), _definer(cls, new)
            if source is not None and (target is None or mro.index(source) < mro.index(target)):
                setattr(cls, new, _by_position(vars(source)[old], getattr(cls, new, None)))
        first = min(mro.index(base) for base in cls.__bases__ if issubclass(base, Hooks089))
        for name in sorted(cls._retired_hooks):
            source = _definer(cls, name)  # cls itself, or a mixin that meets the library here
            mixin = source is not None and not issubclass(source, Hooks089)
            if source is not cls and not (mixin and mro.index(source) < first):
                continue  # reported where it was defined or met the library, or never reached
            warn_user(
                f"{cls.__qualname__}.{name} overrides a torchebm 0.8.9 hook that this version "
                f"no longer calls, so it has no effect: {cls._retired_hooks[name]}"
            )


def _definer(cls: type, name: str) -> type | None:
    """The first class of ``cls``'s MRO that defines ``name`` (a mixin's override counts)."""
    return next((c for c in cls.__mro__ if name in vars(c)), None)


def _by_position(method: Any, hook: Any) -> Any:
    """``method`` standing in for ``hook`` (the method it overrides under a new name), called
    as the library calls ``hook``: by position or by ``hook``'s parameter names. ``method``
    itself where its leading parameters are ``hook``'s, same names, in order, each
    positional-or-keyword; else a wrapper that binds a call to ``hook``'s parameters and
    passes as many of them by position as ``method`` takes so (0.8.9 passed them by
    position: its overrides named them as they liked), the others by name."""
    hook = getattr(hook, "stands_in_for", hook)  # a subclass of such a subclass: the library's
    if not inspect.isfunction(method) or not inspect.isfunction(hook):
        return method
    signature = inspect.signature(hook)
    names, own = list(signature.parameters), list(inspect.signature(method).parameters.values())
    either = inspect.Parameter.POSITIONAL_OR_KEYWORD
    if [p.name for p in own[: len(names)] if p.kind is either] == names:
        return method
    positional = (inspect.Parameter.POSITIONAL_ONLY, either)
    n = (
        len(names)
        if any(p.kind is p.VAR_POSITIONAL for p in own)
        else len([p for p in own if p.kind in positional])
    )

    @functools.wraps(method)
    def by_position(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = list(bound.arguments.values())
        return method(*values[:n], **dict(zip(names[n:], values[n:])))

    by_position.stands_in_for = hook  # type: ignore[attr-defined]
    by_position.__signature__ = signature  # type: ignore[attr-defined]
    return by_position


class ConditioningAttrs089:
    """Mixin of the loss families (contrastive divergence, score matching, the flow
    objectives): torchebm 0.8.9's attributes ``cfg_dropout`` and ``null_condition`` of a loss,
    read from and written to its `torchebm.core.Conditioning` (``self.conditioning``).

    Writing one is checked as the constructor checks it and changes what the next training
    call does (0.8.9 code sets ``loss.cfg_dropout = 0.2`` between epochs).

    A subclass that defines its own ``cfg_dropout`` property (0.8.9 read ``self.cfg_dropout``
    at every training call, so a property computing it, e.g. annealed over epochs, set the
    dropout) has it read at each call, checked in [0, 1]; its setter, if any, receives the
    constructor's value, as 0.8.9's constructor assigned it. Other classes read
    ``self.conditioning`` alone.

    Example:
        >>> from torchebm.flows import EquilibriumMatchingLoss
        >>> loss = EquilibriumMatchingLoss(nn.Linear(2, 2))
        >>> loss.null_condition = 10
        >>> loss.cfg_dropout = 0.2  # every later training call drops 20% of the labels
        >>> loss.conditioning.cfg_dropout
        0.2
    """

    conditioning: Any  # set by BaseLoss.__init__

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        apply: Any = getattr(cls, "apply_conditioning", None)
        if _own_cfg_dropout(cls) and not getattr(apply, "reads_cfg_dropout", False):
            cls.apply_conditioning = _reading_cfg_dropout(apply)  # type: ignore[attr-defined]

    @property
    def cfg_dropout(self) -> float:
        """Probability that a training call replaces a sample's ``y`` by ``null_condition``."""
        return self.conditioning.cfg_dropout

    @cfg_dropout.setter
    def cfg_dropout(self, value: float) -> None:
        p = check_probability("cfg_dropout", value)
        if p > 0 and self.conditioning.null_condition is None:
            raise ConfigurationError(
                f"cfg_dropout={value!r} needs null_condition (the label or embedding a dropped "
                "y becomes), got None: set null_condition first"
            )
        self.conditioning.cfg_dropout = p

    @property
    def null_condition(self) -> Any:
        """What a dropped ``y`` becomes: a label id, a tensor or a callable ``(y, mask) -> y``."""
        return self.conditioning.null_condition

    @null_condition.setter
    def null_condition(self, value: Any) -> None:
        if value is None and self.conditioning.cfg_dropout > 0:
            raise ConfigurationError(
                f"null_condition=None with cfg_dropout={self.conditioning.cfg_dropout}: a "
                "positive cfg_dropout needs a null_condition; set cfg_dropout = 0.0 first"
            )
        self.conditioning.null_condition = value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("cfg_dropout", "null_condition"):  # also a module (nn.Module would
            object.__setattr__(self, name, value)  # register a callable one as a submodule)
        else:
            super().__setattr__(name, value)
        if name in ("conditioning", "null_condition"):  # (BaseLoss sets `conditioning`)
            _warn_trainable_null(self)
        own: Any = _own_cfg_dropout(type(self)) if name == "conditioning" else None
        if getattr(own, "fset", None) is not None:  # 0.8.9's constructor set the attribute
            own.fset(self, value.cfg_dropout)


def _own_cfg_dropout(cls: type) -> Any:
    """The ``cfg_dropout`` property of a subclass that defines its own, else ``None``."""
    own = getattr(cls, "cfg_dropout", None)
    mine = vars(ConditioningAttrs089)["cfg_dropout"]
    return own if own is not mine and hasattr(type(own), "__get__") else None


def _reading_cfg_dropout(apply: Callable[..., dict]) -> Callable[..., dict]:
    """``apply_conditioning`` that drops labels at the subclass's own ``cfg_dropout``."""

    @functools.wraps(apply)
    def apply_conditioning(self: Any, *args: Any, **kwargs: Any) -> dict:
        cond = self.conditioning
        if getattr(cond, "serving_property", False):  # a subclass's wrapper set it already
            return apply(self, *args, **kwargs)
        stored = cond.cfg_dropout  # what the base property reads: kept, so a property
        # computed from it (super().cfg_dropout * 0.5) does not compound per call
        vars(ConditioningAttrs089)["cfg_dropout"].fset(self, self.cfg_dropout)  # checked
        cond.serving_property = True
        try:
            return apply(self, *args, **kwargs)
        finally:
            cond.cfg_dropout, cond.serving_property = stored, False

    apply_conditioning.reads_cfg_dropout = True  # type: ignore[attr-defined]
    return apply_conditioning


def _warn_trainable_null(loss: Any) -> None:
    """Warn when ``null_condition`` holds trainable parameters: they are not the loss's (0.8.9
    registered them), so an optimizer over ``loss.parameters()`` left them untrained, silently.
    """
    null = loss.conditioning.null_condition
    params = list(null.parameters()) if isinstance(null, nn.Module) else [null]
    if any(isinstance(p, torch.Tensor) and p.requires_grad for p in params):
        warn_user(
            f"{type(loss).__name__}: null_condition holds trainable parameters, which are not "
            "parameters of the loss (loss.parameters() and its state_dict leave them out; "
            "torchebm 0.8.9 registered them): pass them to the optimizer and save them "
            "yourself, or keep the learnable null embedding in the model (e.g. the null class "
            "of its label embedder)"
        )


class Old089:
    """Read access to the ``__dict__`` of an object pickled by torchebm 0.8.9.

    Args:
        state: The unpickled ``__dict__``.
    """

    def __init__(self, state: dict[str, Any]):
        self.state = state

    def _tables(self) -> tuple[dict[str, Any], ...]:
        s = self.state
        # (a parameter last: e.g. a loss's learnable null_condition, which 0.8.9 registered)
        return (s, s.get("_modules") or {}, s.get("schedulers") or {}, s.get("_parameters") or {})

    def has(self, name: str) -> bool:
        """Whether the object had an attribute, submodule, scheduler or parameter ``name``."""
        return any(name in table for table in self._tables())

    def get(self, name: str, default: Any = None) -> Any:
        """Its attribute, else submodule, scheduler or parameter called ``name``."""
        return next((t[name] for t in self._tables() if name in t), default)

    def tensors(self) -> dict[str, Any]:
        """Its own parameters and persistent buffers (the non-``None`` ones)."""
        skip = self.state.get("_non_persistent_buffers_set") or set()
        found = dict(self.state.get("_parameters") or {})
        found.update((k, b) for k, b in (self.state.get("_buffers") or {}).items() if k not in skip)
        return {k: v for k, v in found.items() if v is not None}

    def placement(self) -> dict[str, Any]:
        """``device`` and ``dtype`` of its probe buffer (the constructor's), if it had one."""
        probe = (self.state.get("_buffers") or {}).get("_torchebm_probe")
        return {} if probe is None else {"device": probe.device, "dtype": probe.dtype}


def accept_089_pickle(
    marker: str, overrides: Callable[[Old089], dict[str, Any]] | None = None
) -> Callable[[Any, dict[str, Any]], None]:
    """A ``__setstate__`` that rebuilds an object pickled by torchebm 0.8.9 (module docstring).

    Args:
        marker: An attribute that this version's constructor always sets and 0.8.9's did not.
        overrides: Constructor arguments that 0.8.9 stored under another name or form,
            read from the old state (they win over the arguments found by name; ``OMIT``
            leaves one out).
    """

    def __setstate__(self: Any, state: dict[str, Any]) -> None:
        owner: type[Any] = next(
            c for c in type(self).__mro__ if vars(c).get("__setstate__") is __setstate__
        )
        old = Old089(state)
        if marker in state:
            super(owner, self).__setstate__(state)
        else:
            _rebuild(self, old, overrides(old) if overrides is not None else {})

    return __setstate__


def _constructor_kwargs(init: Callable[..., Any], old: Old089, overrides: dict) -> dict:
    params = inspect.signature(init).parameters
    names = [n for n, p in params.items() if p.kind in _KINDS and n != "self"]
    found = {n: n if old.has(n) else _OLD_NAMES.get(n, "") for n in names}
    kwargs = {n: old.get(name) for n, name in found.items() if old.has(name)}
    kwargs.update({k: v for k, v in old.placement().items() if k in names})
    kwargs.update(overrides)
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return {k: v for k, v in kwargs.items() if v is not OMIT and (open_ended or k in names)}


def _rebuild(obj: Any, old: Old089, overrides: dict[str, Any]) -> None:
    cls: type[Any] = next(c for c in type(obj).__mro__ if c.__module__.startswith("torchebm."))
    cls.__init__(obj, **_constructor_kwargs(cls.__init__, old, overrides))
    children = {k: m for k, m in (old.state.get("_modules") or {}).items() if m is not None}
    current = dict(obj.named_children())
    kept = {k for k, m in children.items() if type(current.get(k)) is type(m)}
    for name in kept:
        setattr(obj, name, children[name])
    if type(obj) is not cls:  # a user's subclass: what it added to the 0.8.9 class
        kept |= _adopt_additions(obj, old, {k: m for k, m in children.items() if k not in current})
    tensors = old.tensors()
    for name, child in children.items():
        if name not in kept:
            tensors.update((f"{name}.{k}", v) for k, v in child.state_dict(keep_vars=True).items())
    frozen = {
        id(t) for t in tensors.values() if isinstance(t, nn.Parameter) and not t.requires_grad
    }
    missing = obj.load_state_dict(tensors, strict=False, assign=True).missing_keys
    _check_loaded(obj, missing, kept)
    for p in obj.parameters():
        if id(p) in frozen:
            p.requires_grad_(False)
    reused = {id(m) for name in kept for m in children[name].modules()}
    for m in obj.modules():
        if id(m) not in reused:
            m.training = bool(old.state.get("training", True))
    for name in _PRECISION:
        if name in old.state and hasattr(obj, name):
            setattr(obj, name, old.state[name])


def _check_loaded(obj: nn.Module, missing: list[str], kept: set[str]) -> None:
    """Every parameter of the rebuilt object holds a value from the pickle (a 0.8.9 state
    that this upgrade does not map raises instead of keeping a fresh initialisation)."""
    params = {name for name, _ in obj.named_parameters()}
    fresh = [k for k in missing if k in params and k.split(".", 1)[0] not in kept]
    if fresh:
        raise ConfigurationError(
            f"cannot upgrade the torchebm 0.8.9 pickle of {type(obj).__name__}: it holds no "
            f"value for the parameters {fresh}"
        )


def _adopt_additions(obj: nn.Module, old: Old089, children: dict[str, nn.Module]) -> set[str]:
    """Add the plain attributes, submodules, parameters and buffers a user's subclass set on
    the 0.8.9 object; returns the names of the submodules added."""
    for name, value in old.state.items():
        if not name.startswith("_") and name not in vars(obj) and not hasattr(type(obj), name):
            setattr(obj, name, value)
    for name, child in children.items():
        obj.add_module(name, child)
    for name, tensor in old.tensors().items():
        if hasattr(obj, name):
            continue
        if isinstance(tensor, nn.Parameter):
            obj.register_parameter(name, tensor)
        else:
            obj.register_buffer(name, tensor)
    return set(children)


_TABLEAU = ("tableau_a", "tableau_b", "tableau_c", "error_weights", "order", "fsal")


def tableau_from_properties(cls: type) -> None:
    """A Runge-Kutta subclass written for torchebm 0.8.9 gave its tableau as properties;
    this version reads class attributes: each such property becomes the class attribute it
    returns, with one ``DeprecationWarning``.

    Raises:
        TypeError: a property that cannot be read without an instance's state.
    """
    found = [n for n in _TABLEAU if isinstance(vars(cls).get(n), property)]
    if not found:
        return
    bare: Any = object.__new__(cls)  # the properties of 0.8.9's tableaux return constants
    for name in found:
        try:
            value = vars(cls)[name].fget(bare)
        except Exception as exc:
            raise TypeError(
                f"{cls.__name__}.{name} is a property that needs an instance; define it as a "
                f"class attribute ({name} = ...)"
            ) from exc
        setattr(cls, name, value)
    warn_once(
        f"tableau-properties:{cls.__module__}.{cls.__qualname__}",
        f"{cls.__name__} defines {', '.join(found)} as properties (torchebm 0.8.9); define "
        "them as class attributes instead (e.g. tableau_b = (0.5, 0.5))",
        DeprecationWarning,
    )
