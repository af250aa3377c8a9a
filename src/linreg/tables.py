"""Reading a user's table, CSV or Parquet, through pyarrow's columnar readers.

pyarrow parses a CSV in C++ blocks straight into typed columns, without a Python object per cell. When it
refuses a file, or a number column holds an empty cell, NaN or infinity, the file is read once more line by
line in Python, to name the file, line and column of the first bad cell (or to read the blank rows pyarrow
does not skip).
"""

from __future__ import annotations

import codecs
import csv
import io
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import torch

from linreg.errors import ConfigError
from linreg.validate import table_file

FLOAT32_MAX = float(np.finfo(np.float32).max)

# The first bytes of compressed files: those pyarrow decompresses, and those it cannot.
CODECS = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\x28\xb5\x2f\xfd": "zstd"}
ARCHIVES = {b"PK\x03\x04": "a zip archive", b"\xfd7zXZ\x00": "an xz file", b"7z\xbc\xaf": "a 7-Zip archive"}
PARQUET_MAGIC = b"PAR1"
# Byte-order marks of text that is not UTF-8 (UTF-32's first, as it begins with UTF-16's).
UNICODE_MARKS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def check_columns(feature_columns, target_column: str | None) -> list[str]:
    """The feature columns as a list, refusing an empty list, repeated names and the target among them."""
    single = isinstance(feature_columns, (str, int))  # data.feature_columns=x1 means one column
    features = [str(name) for name in ([feature_columns] if single else list(feature_columns or []))]
    if not features:
        raise ConfigError("data.feature_columns is empty: name at least one column, e.g. data.feature_columns=[x1,x2]")
    repeated = sorted({name for name in features if features.count(name) > 1})
    if repeated:
        raise ConfigError(f"data.feature_columns names {repeated} more than once: list each column once")
    if target_column is not None and str(target_column) in features:
        raise ConfigError(
            f"data.target_column={target_column!r} is also in data.feature_columns: a model that sees its target "
            "learns nothing; remove it from the features"
        )
    return features


def _kind(file: Path) -> tuple[str, str | None]:
    """('parquet' or 'csv', the compression codec or None), from the file's first bytes, not its name."""
    with file.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(PARQUET_MAGIC):
        return "parquet", None
    for magic, what in ARCHIVES.items():
        if head.startswith(magic):
            raise ConfigError(
                f"{file} is {what}, which this reader does not open: extract the CSV and point data.path at it"
            )
    for magic, codec in CODECS.items():
        if head.startswith(magic):
            return "csv", codec
    for bom, name in UNICODE_MARKS:
        if head.startswith(bom):
            raise ConfigError(f"{file} is {name} text: save it as UTF-8 (in Excel: 'CSV UTF-8'), then read it again")
    return "csv", None


def _text(file: Path, codec: str | None) -> io.TextIOWrapper:
    """The file as text: decompressed, decoded as UTF-8, a leading byte-order mark (as Excel writes) dropped."""
    return io.TextIOWrapper(pa.input_stream(str(file), compression=codec), encoding="utf-8-sig", newline="")


def _csv_header(file: Path, codec: str | None) -> list[str]:
    try:
        with _text(file, codec) as text:
            header = next(csv.reader(text), None)
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{file}: not UTF-8 text (byte {error.object[error.start]:#04x} in the header): "
            "save it as UTF-8 (in Excel: 'CSV UTF-8'), then read it again"
        ) from None
    except (OSError, pa.ArrowException) as error:
        raise ConfigError(f"{file}: cannot be read as a CSV file ({error})") from None
    if header is None:
        raise ConfigError(f"{file}: the file is empty; it needs a header row and at least one data row")
    return [name.strip() for name in header]


def _read_slowly(file: Path, codec: str | None, header: list[str], columns: list[str], keep_all: bool) -> pa.Table:
    """The file read row by row in Python: raises at the first cell that is not a finite float32 number, or at a
    ragged row, naming file, line and column. Only for files the fast reader refuses, which are mostly bad ones;
    it also reads what that reader will not, rows of blanks or of bare commas (as spreadsheets leave), skipping them.
    """
    index = {name: header.index(name) for name in columns}
    kept = header if keep_all else columns
    values: dict[str, list] = {name: [] for name in kept}
    try:
        with _text(file, codec) as text:
            reader = csv.reader(text)
            next(reader)
            for row in reader:
                line = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise ConfigError(f"{file}, line {line}: {len(row)} fields where the header has {len(header)}")
                for name, i in index.items():
                    try:
                        value = float(row[i])
                    except ValueError:
                        raise ConfigError(f"{file}, line {line}, column {name!r}: {row[i]!r} is not a number") from None
                    if not math.isfinite(value):
                        raise ConfigError(f"{file}, line {line}, column {name!r}: {row[i]!r} is not a finite number")
                    if abs(value) > FLOAT32_MAX:
                        raise ConfigError(f"{file}, line {line}, column {name!r}: {row[i]!r} is too large for float32")
                    values[name].append(value)
                for name in kept:
                    if name not in index:
                        values[name].append(row[header.index(name)])
    except UnicodeDecodeError as error:
        raise ConfigError(f"{file}: not UTF-8 text ({error.reason}): save it as UTF-8, then read it again") from None
    number = pa.float64() if keep_all else pa.float32()
    return pa.table({name: pa.array(values[name], number) if name in index else _typed(values[name]) for name in kept})


def _typed(cells: list[str]) -> pa.Array:
    """Another column's text as whole numbers or numbers where every cell is one (as pyarrow would infer)."""
    text = pa.array(cells, pa.string())
    for kind in (pa.int64(), pa.float64()):
        try:
            return text.cast(kind)
        except pa.ArrowInvalid:
            continue
    return text


def _require_columns(file: Path, names: list[str], columns: list[str], where: str) -> None:
    """Every wanted column is among ``names`` (a CSV header or a Parquet schema), and only once."""
    missing = [name for name in columns if name not in names]
    if missing:
        raise ConfigError(
            f"{file}: column(s) {missing} not in {where} {names}; name existing columns in "
            "data.feature_columns (and data.target_column)"
        )
    repeated = sorted({name for name in columns if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"{file}: column(s) {repeated} appear more than once in {where}: rename them")


def _read_csv(file: Path, codec: str | None, columns: list[str], keep_all: bool) -> pa.Table:
    header = _csv_header(file, codec)
    missing = [name for name in columns if name not in header]
    separator = next((s for s in ";\t|" if len(header) == 1 and s in header[0]), None)
    if missing and separator:
        raise ConfigError(
            f"{file}: the header is one field, {header[0]!r}: the columns seem separated by {separator!r}; "
            "save the file with commas between columns"
        )
    _require_columns(file, header, columns, "the header")
    try:
        table = pa_csv.read_csv(
            pa.input_stream(str(file), compression=codec),
            read_options=pa_csv.ReadOptions(column_names=header, skip_rows=1),
            convert_options=pa_csv.ConvertOptions(
                # float32 is what training uses, in half the memory; a table kept whole is written out again
                column_types={name: pa.float64() if keep_all else pa.float32() for name in columns},
                include_columns=None if keep_all else columns,
            ),
            memory_pool=pa.system_memory_pool(),  # gives the table's memory back once the tensors are made
        )
    except pa.ArrowException:  # a bad cell, a ragged row, bad encoding: find the line in Python
        return _read_slowly(file, codec, header, columns, keep_all)
    if any(table.column(name).null_count for name in columns) or not _finite(table, columns):
        return _read_slowly(file, codec, header, columns, keep_all)
    return table


def _read_parquet(file: Path, columns: list[str], keep_all: bool) -> pa.Table:
    try:
        _require_columns(file, pq.read_schema(file).names, columns, "the table's columns")
        table = pq.read_table(file, columns=None if keep_all else columns)
    except (pa.ArrowException, OSError) as error:
        raise ConfigError(f"{file}: not a readable Parquet file ({error})") from None
    for name in columns:
        column = table.column(name)
        kind = column.type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
            raise ConfigError(f"{file}, column {name!r}: holds {column.type} values, not numbers")
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0]) + 1
            raise ConfigError(f"{file}, row {row}, column {name!r}: the cell is empty")
        table = table.set_column(table.column_names.index(name), name, column.cast(pa.float64()))
    for name in columns:
        values = table.column(name).to_numpy()
        bad = np.flatnonzero(~np.isfinite(values) | (np.abs(values) > FLOAT32_MAX))
        if len(bad):
            raise ConfigError(
                f"{file}, row {bad[0] + 1}, column {name!r}: {float(values[bad[0]])!r} is not a finite float32 number"
            )
    return table


def _finite(table: pa.Table, columns: list[str]) -> bool:
    return all(np.all(np.abs(table.column(name).to_numpy()) <= FLOAT32_MAX) for name in columns)


def read(path: str, columns: list[str], keep_all: bool = False) -> pa.Table:
    """The table at ``path`` (CSV, possibly compressed, or Parquet) with ``columns`` as finite float numbers.

    ``keep_all`` keeps the file's other columns too, as pyarrow reads them (for writing predictions beside them).
    """
    file = table_file(path)
    kind, codec = _kind(file)
    table = _read_parquet(file, columns, keep_all) if kind == "parquet" else _read_csv(file, codec, columns, keep_all)
    if table.num_rows == 0:
        raise ConfigError(f"{file}: no data rows under the header")
    return table


def to_tensor(table: pa.Table, columns: list[str]) -> torch.Tensor:
    """The named number columns as one float32 (rows, columns) tensor, filled a column at a time."""
    out = torch.empty(table.num_rows, len(columns), dtype=torch.float32)
    view = out.numpy()  # shares out's memory; numpy casts to float32 as it copies
    for i, name in enumerate(columns):
        view[:, i] = table.column(name).to_numpy()
    return out
