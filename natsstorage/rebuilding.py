"""How a storage is made again elsewhere: from a migration (``deconstruct``), a pickle, a copy; never with a secret.

Apps rebuild storages these ways (a CMS deleting renditions in a background
task, Django writing a migration), so a rebuilt storage must reach the same
servers with the same credentials while no secret is written down: a storage
made from ``STORAGES`` records its alias, and the copy reads the secrets from
settings where it is rebuilt.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

from django.core.signals import setting_changed

from natsstorage import conf

PATH = "natsstorage.NatsStorage"  # what migrations import


class Rebuildable:
    """The part of ``NatsStorage`` that remembers how it was made, and writes that down without secrets."""

    defaults: ClassVar[Mapping[str, Any]]
    _bucket_name: str | None
    _options: Mapping[str, Any]
    _setting_changed: Callable[..., None]  # the storage's: it drops what the settings built
    _constructor_args: tuple[tuple[Any, ...], dict[str, Any]]
    # Class-level, for copies pickled before these existed.
    _alias: str | None = None  # STORAGES[_alias]["OPTIONS"] are read under this storage's own options
    _configured_as: str | None = None  # the STORAGES alias this storage was made from, for its copies
    _secrets_left_out: tuple[str, ...] = ()  # a copy without the secrets it was made with in code

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        storage = super().__new__(cls)
        storage._constructor_args = (args, kwargs)  # what deconstruct() writes into migrations
        return storage

    def _remember_alias(self, alias: str | None) -> None:
        """Which ``STORAGES`` alias this storage reads, or was made from: its copies will read their secrets there."""
        self._alias = alias
        if alias is not None:
            self._configured_as = alias
        elif conf.SECRETS & self._options.keys() and not self._constructor_args[0]:
            # Django builds STORAGES[alias] as BACKEND(**OPTIONS): which alias, its copies will need to know.
            self._configured_as = conf.alias_of(type(self), self._constructor_args[1])

    def _secret_keys(self) -> list[str]:
        return sorted(conf.SECRETS & (self._options.keys() | self._constructor_args[1].keys()))

    def deconstruct(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        """For migrations and the apps that rebuild a storage from it: the arguments given, without secrets,
        so none lands in a migration file and changing one makes no new migration. A storage made from
        ``STORAGES`` adds ``alias``: the rebuilt one reads the secrets from there."""
        args, kwargs = self._constructor_args
        path = f"{type(self).__module__}.{type(self).__qualname__}"
        path = PATH if path == "natsstorage.storage.NatsStorage" else path
        kept = {key: value for key, value in kwargs.items() if key not in conf.SECRETS}
        left_out = self._secret_keys()
        if left_out and self._configured_as is not None:
            kept["alias"] = self._configured_as
        elif left_out:
            warnings.warn(self._left_out_message(left_out, "deconstruct() leaves them out"), stacklevel=2)
        return path, args, kept

    def _left_out_message(self, left_out: list[str], what: str) -> str:
        bucket = self._bucket_name or self._options.get("bucket") or self.defaults.get("bucket", "")
        return (
            f"{type(self).__name__} for bucket {bucket!r} was given {', '.join(left_out)} in code, and {what}: "
            "secrets are never written into migrations or pickles. Put them in settings.NATSSTORAGE, or in "
            "STORAGES[alias]['OPTIONS'] and make the storage with alias=..."
        )

    def _state(self) -> dict[str, Any]:
        # The bucket handle holds asyncio state of the loop thread: a copy makes its own.
        state = self.__dict__.copy()
        state.pop("config", None)
        state.pop("bucket", None)
        return state

    def __getstate__(self) -> dict[str, Any]:
        """For pickle: no secret. The copy reads them from ``STORAGES[alias]`` (or ``NATSSTORAGE``) where it
        is unpickled; one made in code with secrets refuses to connect rather than reach another server."""
        state = self._state()
        left_out = self._secret_keys()
        if left_out:
            args, kwargs = self._constructor_args
            state["_options"] = {key: value for key, value in self._options.items() if key not in conf.SECRETS}
            state["_constructor_args"] = (
                args,
                {key: value for key, value in kwargs.items() if key not in conf.SECRETS},
            )
            if self._configured_as is not None:
                state["_alias"] = self._configured_as
            else:
                state["_secrets_left_out"] = tuple(left_out)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        setting_changed.connect(self._setting_changed)

    # copy.copy() and copy.deepcopy() stay in this process: they keep the secrets a pickle leaves out.
    def __copy__(self) -> Self:
        copied = type(self).__new__(type(self))
        copied.__setstate__(self._state())
        return copied

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        copied.__setstate__(copy.deepcopy(self._state(), memo))
        return copied
