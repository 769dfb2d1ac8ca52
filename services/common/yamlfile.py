"""Configuration files in YAML validated by a pydantic model, with errors naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(
    path: str | Path, model: type[M], what: str, expected: str, error: type[ValueError]
) -> M:
    """Read ``path`` (a YAML mapping) into ``model``.

    Parameters
    ----------
    path : str or Path
        The file.
    model : type
        The pydantic model of its content.
    what : str
        What the file is, for messages ("network file").
    expected : str
        What its top level must hold, for messages ("a 'stations' list").
    error : type
        The exception raised, with a message naming the file and the reason.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping with {expected}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(f"{path}: {exc}") from None
