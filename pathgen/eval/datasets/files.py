"""Checked access to dataset files: folders, CSV tables, class folders, untrusted relative paths.

Every check raises ValueError with one line that names the file or folder and what is wrong,
so a reader's error tells the user what to fix without a traceback hunt.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def require_dir(path: str | Path, what: str) -> Path:
    """`path` as a Path if it is a folder, else a ValueError saying which `what` is missing."""
    path = Path(path)
    if not path.is_dir():
        state = "is a file, not a folder" if path.exists() else "does not exist"
        raise ValueError(f"{path}: {what} folder {state}")
    return path


def require_file(path: str | Path, what: str) -> Path:
    """`path` as a Path if it is a file, else a ValueError saying which `what` is missing."""
    path = Path(path)
    if not path.is_file():
        state = "is a folder, not a file" if path.exists() else "does not exist"
        raise ValueError(f"{path}: {what} {state}")
    return path


def read_csv_rows(path: Path, required: tuple[str, ...], header: bool = True) -> list[dict[str, str]]:
    """Rows of a CSV as {column: stripped value}; checks the header has the `required` columns.

    With header=False the columns are named "0", "1", … (Camelyon16's reference.csv has none).
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path}: cannot read as a UTF-8 CSV ({error})") from error
    if header:
        if not rows:
            raise ValueError(f"{path}: empty CSV; expected a header with columns {', '.join(required)}")
        names, rows = [cell.strip() for cell in rows[0]], rows[1:]
        missing = [name for name in required if name not in names]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(map(repr, missing))} in header {names}")
    else:
        names = [str(i) for i in range(max((len(row) for row in rows), default=0))]
    if not rows:
        raise ValueError(f"{path}: the CSV has no data rows")
    return [{name: (row[i].strip() if i < len(row) else "") for i, name in enumerate(names)} for row in rows]


def resolve_inside(base: Path, relative: str, where: str) -> Path:
    """`base / relative`, resolved, refusing anything that could leave `base`.

    Paths read from a CSV are not trusted: absolute paths (POSIX or Windows), `..` parts and
    symlinks that resolve outside `base` are all refused.
    """
    text = relative.strip()
    if not text:
        raise ValueError(f"{where}: empty path")
    windows = PureWindowsPath(text)
    if PurePosixPath(text).is_absolute() or windows.is_absolute() or windows.drive or text.startswith("\\"):
        raise ValueError(f"{where}: absolute path {text!r} is not allowed; give it relative to {base}")
    if ".." in PurePosixPath(text.replace("\\", "/")).parts:
        raise ValueError(f"{where}: path {text!r} leaves {base} ('..' is not allowed)")
    resolved = (base / text).resolve()
    if not resolved.is_relative_to(base.resolve()):
        raise ValueError(f"{where}: path {text!r} resolves outside {base} (through a symlink)")
    return resolved


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def class_folder_files(
    folder: Path, extensions: tuple[str, ...], known: tuple[str, ...] | None = None, required: tuple[str, ...] = ()
) -> list[tuple[Path, str]]:
    """(file, class name) for every image in the class subfolders of `folder`, sorted.

    `known` (if given) lists the allowed class folder names; `required` must all be there.
    A file inside a class folder whose suffix is not in `extensions` (``Thumbs.db``,
    ``.DS_Store``, a notes file) is skipped with a warning that names it; a class folder with no
    images or a nested folder is an error. Loose files beside the class folders are ignored
    (BACH keeps a ground-truth CSV there).
    """
    require_dir(folder, "image")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and _visible(p))
    if known is not None:
        unknown = [name for name in classes if name not in known]
        if unknown:
            raise ValueError(f"{folder}: unknown class folder {unknown[0]!r}; expected only {', '.join(known)}")
    missing = [name for name in required if name not in classes]
    if missing:
        raise ValueError(f"{folder}: missing class folder(s) {', '.join(missing)}")
    if not classes:
        raise ValueError(f"{folder}: no class subfolders found")
    samples = []
    for name in classes:
        entries = []
        for entry in sorted((folder / name).iterdir()):
            if entry.is_dir():
                if _visible(entry):
                    raise ValueError(f"{entry}: unexpected folder inside class folder {name!r}")
            elif entry.suffix.lower() in extensions and _visible(entry):
                entries.append(entry)
            else:
                warnings.warn(f"{entry}: not an image file ({', '.join(extensions)}); skipped", stacklevel=2)
        if not entries:
            raise ValueError(f"{folder / name}: class folder has no images ({', '.join(extensions)})")
        samples.extend((entry, name) for entry in entries)
    return samples


def load_rgb(path: Path) -> np.ndarray:
    """An image file as uint8 (H, W, 3) RGB; grey or RGBA images are converted."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB") if image.mode != "RGB" else image.copy())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read as an image ({error})") from error


def class_index(labels: list[str], class_names: tuple[str, ...]) -> np.ndarray:
    """Integer labels (int64) of class-name labels, in the order of `class_names`."""
    lookup = {name: i for i, name in enumerate(class_names)}
    return np.array([lookup[label] for label in labels], dtype=np.int64)


def sorted_class_names(labels: list[str]) -> tuple[str, ...]:
    """The distinct labels, sorted numerically if every one is an integer, else as text."""
    distinct = set(labels)
    if all(label.lstrip("-").isdigit() for label in distinct):
        return tuple(sorted(distinct, key=int))
    return tuple(sorted(distinct))
