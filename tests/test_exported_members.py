"""The public surface is small, explicit and documented."""

import ast
import typing
from pathlib import Path

import pytest

import dockerdrag


def test_all_is_exactly_what_is_exported() -> None:
    for name in dockerdrag.__all__:  # public names are loaded on first use
        getattr(dockerdrag, name)
    public = {name for name in vars(dockerdrag) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(dockerdrag, name)).__name__ == "module"}
    assert set(dockerdrag.__all__) - {"__version__"} == public - modules


def test_every_public_name_has_a_docstring() -> None:
    for name in dockerdrag.__all__:
        if name == "__version__":
            continue
        member = getattr(dockerdrag, name)
        if type(member).__name__ == "UnionType" or name == "ProgressEvent":
            continue
        assert (member.__doc__ or "").strip(), f"{name} has no docstring"


def test_all_errors_share_one_base() -> None:
    for name in dockerdrag.__all__:
        member = getattr(dockerdrag, name)
        if isinstance(member, type) and issubclass(member, Exception):
            assert issubclass(member, dockerdrag.DockerDragError), name


def test_public_methods_of_exported_classes_have_docstrings() -> None:
    missing = []
    for name in dockerdrag.__all__:
        member = getattr(dockerdrag, name)
        if not isinstance(member, type) or issubclass(member, Exception):
            continue
        for attribute, value in vars(member).items():
            if attribute.startswith("_"):
                continue
            function = value.fget if isinstance(value, property) else value
            if callable(function) and not (function.__doc__ or "").strip():
                missing.append(f"{name}.{attribute}")
    assert not missing, missing


def test_the_api_for_progress_and_inspection_is_exported() -> None:
    for name in ("pull_images", "PullFinished", "PullEvent", "ImageInspection", "LayerPhase"):
        assert name in dockerdrag.__all__
    assert callable(dockerdrag.Puller.pull_events)
    assert callable(dockerdrag.Puller.inspect)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        dockerdrag.no_such_name  # noqa: B018
    assert "pull_image" in dir(dockerdrag)


def test_the_lazy_names_are_the_ones_type_checkers_see() -> None:
    """``__init__`` lists each public name twice: for mypy (imports) and for loading."""
    tree = ast.parse(Path(dockerdrag.__file__).read_text(encoding="utf-8"))
    checked = {
        alias.name: (node.module or "")
        for block in tree.body
        if isinstance(block, ast.If)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert checked == dockerdrag._HOMES


def test_every_error_class_is_exported() -> None:
    from dockerdrag import errors

    classes = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, Exception) and not name.startswith("_")
    }
    assert classes - set(dockerdrag.__all__) == set()


def _package_classes(annotation: object) -> set[type]:
    """The dockerdrag classes named anywhere in a type annotation."""
    found: set[type] = set()
    if isinstance(annotation, type) and annotation.__module__.startswith("dockerdrag."):
        found.add(annotation)
    for argument in typing.get_args(annotation):
        found |= _package_classes(argument)
    return found


def test_every_type_in_a_public_signature_is_exported() -> None:
    callables: list[object] = [dockerdrag.pull_image, dockerdrag.pull_images]
    for name in dockerdrag.__all__:
        member = getattr(dockerdrag, name)
        if isinstance(member, type) and not issubclass(member, Exception):
            callables += [
                value
                for attribute, value in vars(member).items()
                if callable(value) and (attribute == "__init__" or not attribute.startswith("_"))
            ]
    used: set[type] = set()
    for function in callables:
        for annotation in typing.get_type_hints(function).values():
            used |= _package_classes(annotation)
    exported = {getattr(dockerdrag, name) for name in dockerdrag.__all__}
    missing = sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in used - exported)
    assert not missing, missing
