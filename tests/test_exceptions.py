"""Every exception type the project defines survives a pickle round trip (a worker's error must reach its parent)."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
from pathlib import Path

import pytest

import pathgen
import tiling

_SAMPLE_BY_ANNOTATION = {"int": 3, "float": 0.5, "bool": True}


def project_exception_types() -> list[type[BaseException]]:
    """Every BaseException subclass defined in a module of `pathgen` or `tiling`."""
    found = {}
    for package in (pathgen, tiling):
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            module = importlib.import_module(info.name)
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[name] for name in sorted(found)]


def build(cls: type[BaseException]) -> BaseException:
    """An instance with a value for every required constructor argument."""
    if cls.__init__ is BaseException.__init__ or cls.__init__ is Exception.__init__:
        return cls("/data/slide.svs: something is wrong")
    args = []
    for name, param in list(inspect.signature(cls.__init__).parameters.items())[1:]:
        if param.default is not inspect.Parameter.empty or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = str(param.annotation)
        sample = next((v for key, v in _SAMPLE_BY_ANNOTATION.items() if annotation == key), None)
        args.append(sample if sample is not None else (Path("/data/slide.svs") if "Path" in annotation else name))
    return cls(*args)


def test_the_walk_finds_the_known_types():
    names = {cls.__name__ for cls in project_exception_types()}
    assert {"SlideError", "StoreError", "OutputError", "ConfigError", "WorkerCrashed", "TaskError"} <= names


@pytest.mark.parametrize("cls", project_exception_types(), ids=lambda cls: f"{cls.__module__}.{cls.__qualname__}")
def test_exception_pickle_round_trips(cls):
    err = build(cls)
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is cls
    assert str(copy) == str(err) and copy.args == err.args
    assert vars(copy) == vars(err)  # attributes such as SlideError.path / .problem come back too
