"""Column expressions (Ray's ``ray.data.expressions``) for ``with_column`` and ``filter(expr=...)``.

``col("x") * 2 + lit(1)``, comparisons, ``&``/``|``/``~``, ``is_null()``, ``is_in([...])``
and ``alias(name)`` build a small tree that each block task evaluates with
``pyarrow.compute``, using the kernels Ray maps each operation to (``/`` is Arrow's
``divide``, ``//`` its floor, ``%`` ``N - floor(N/M) * M``, ``+`` of strings concatenates).
``udf(return_dtype)`` makes a function (or callable class) over Arrow columns an
expression; ``random()``, ``monotonically_increasing_id()``, ``uuid()`` and
``download(uri_column)`` generate columns, ``star()`` stands for every column.

Differences from Ray: a callable-class UDF is built once per worker process (Ray builds
it in the actors of a pool); ``random(seed=...)`` draws the same values in every
execution (Ray, with ``reseed_after_execution=True``, draws new ones per execution).
"""

from __future__ import annotations

import ast
import collections
import contextvars
import enum
import uuid as _uuid
from typing import Any, Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import fs


class Operation(str, enum.Enum):
    """The operations an expression can hold (Ray's names and values)."""

    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    MOD = "mod"
    FLOORDIV = "floordiv"
    GT = "gt"
    LT = "lt"
    GE = "ge"
    LE = "le"
    EQ = "eq"
    NE = "ne"
    AND = "and"
    OR = "or"
    NOT = "not"
    IS_NULL = "is_null"
    IS_NOT_NULL = "is_not_null"
    IN = "in"
    NOT_IN = "not_in"


def _add(left, right):
    if pa.types.is_string(getattr(left, "type", None)) or pa.types.is_large_string(getattr(left, "type", None)):
        return pc.binary_join_element_wise(left, right, "")
    return pc.add(left, right)


def _is_in(left, right):
    values = right if isinstance(right, list) else [right]
    return pc.is_in(left, value_set=pa.array(values))


_KERNELS = {
    Operation.ADD: _add,
    Operation.SUB: pc.subtract,
    Operation.MUL: pc.multiply,
    Operation.DIV: pc.divide,
    Operation.MOD: lambda a, b: pc.subtract(a, pc.multiply(pc.floor(pc.divide(a, b)), b)),
    Operation.FLOORDIV: lambda a, b: pc.floor(pc.divide(a, b)),
    Operation.GT: pc.greater,
    Operation.LT: pc.less,
    Operation.GE: pc.greater_equal,
    Operation.LE: pc.less_equal,
    Operation.EQ: pc.equal,
    Operation.NE: pc.not_equal,
    Operation.AND: pc.and_kleene,
    Operation.OR: pc.or_kleene,
    Operation.NOT: pc.invert,
    Operation.IS_NULL: pc.is_null,
    Operation.IS_NOT_NULL: pc.is_valid,
    Operation.IN: _is_in,
    Operation.NOT_IN: lambda a, b: pc.invert(_is_in(a, b)),
}


def _wrap(value) -> "Expr":
    return value if isinstance(value, Expr) else LiteralExpr(value)


class Expr:
    """An expression over a block's columns."""

    def eval(self, table: pa.Table):
        raise NotImplementedError

    def _bin(self, op, other, reverse=False):
        other = _wrap(other)
        return BinaryExpr(op, other, self) if reverse else BinaryExpr(op, self, other)

    def __add__(self, o): return self._bin(Operation.ADD, o)  # noqa: E704
    def __radd__(self, o): return self._bin(Operation.ADD, o, True)  # noqa: E704
    def __sub__(self, o): return self._bin(Operation.SUB, o)  # noqa: E704
    def __rsub__(self, o): return self._bin(Operation.SUB, o, True)  # noqa: E704
    def __mul__(self, o): return self._bin(Operation.MUL, o)  # noqa: E704
    def __rmul__(self, o): return self._bin(Operation.MUL, o, True)  # noqa: E704
    def __truediv__(self, o): return self._bin(Operation.DIV, o)  # noqa: E704
    def __rtruediv__(self, o): return self._bin(Operation.DIV, o, True)  # noqa: E704
    def __floordiv__(self, o): return self._bin(Operation.FLOORDIV, o)  # noqa: E704
    def __mod__(self, o): return self._bin(Operation.MOD, o)  # noqa: E704
    def __gt__(self, o): return self._bin(Operation.GT, o)  # noqa: E704
    def __lt__(self, o): return self._bin(Operation.LT, o)  # noqa: E704
    def __ge__(self, o): return self._bin(Operation.GE, o)  # noqa: E704
    def __le__(self, o): return self._bin(Operation.LE, o)  # noqa: E704
    def __eq__(self, o): return self._bin(Operation.EQ, o)  # noqa: E704
    def __ne__(self, o): return self._bin(Operation.NE, o)  # noqa: E704
    def __and__(self, o): return self._bin(Operation.AND, o)  # noqa: E704
    def __or__(self, o): return self._bin(Operation.OR, o)  # noqa: E704
    def __invert__(self): return UnaryExpr(Operation.NOT, self)  # noqa: E704

    __hash__ = object.__hash__

    def is_null(self) -> "Expr":
        return UnaryExpr(Operation.IS_NULL, self)

    def is_not_null(self) -> "Expr":
        return UnaryExpr(Operation.IS_NOT_NULL, self)

    def is_in(self, values) -> "Expr":
        return BinaryExpr(Operation.IN, self, LiteralExpr(list(values)))

    def not_in(self, values) -> "Expr":
        return BinaryExpr(Operation.NOT_IN, self, LiteralExpr(list(values)))

    def alias(self, name: str) -> "AliasExpr":
        return AliasExpr(self, name)


class ColumnExpr(Expr):
    def __init__(self, name: str):
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def eval(self, table):
        return table.column(self._name)

    def __repr__(self):
        return f"col({self._name!r})"


class LiteralExpr(Expr):
    def __init__(self, value: Any):
        self.value = value

    def eval(self, table):
        return self.value if isinstance(self.value, list) else pa.scalar(self.value)

    def __repr__(self):
        return f"lit({self.value!r})"


class BinaryExpr(Expr):
    def __init__(self, op: Operation, left: Expr, right: Expr):
        self.op, self.left, self.right = op, left, right

    def eval(self, table):
        return _KERNELS[self.op](self.left.eval(table), self.right.eval(table))


class UnaryExpr(Expr):
    def __init__(self, op: Operation, operand: Expr):
        self.op, self.operand = op, operand

    def eval(self, table):
        return _KERNELS[self.op](self.operand.eval(table))


class AliasExpr(Expr):
    def __init__(self, expr: Expr, name: str):
        self.expr, self._name = expr, name

    @property
    def name(self) -> str:
        return self._name

    def eval(self, table):
        return self.expr.eval(table)


def col(name: str) -> ColumnExpr:
    """The column ``name``."""
    return ColumnExpr(name)


def lit(value: Any) -> LiteralExpr:
    """A constant."""
    return LiteralExpr(value)


#: The index of the task evaluating an expression in its stage (set by ``WithColumn``).
TASK_INDEX: contextvars.ContextVar = contextvars.ContextVar("raycompat_data_task_index", default=0)


class UDFExpr(Expr):
    """A user function over Arrow columns (Ray's ``@udf``): its arguments are expressions,
    each passed as the column it evaluates to; it returns one column."""

    def __init__(self, fn: Callable, args: tuple, kwargs: dict, return_dtype):
        self.fn, self.args, self.kwargs, self.return_dtype = fn, args, kwargs, return_dtype

    def eval(self, table):
        args = [_column(_wrap(a).eval(table), table) for a in self.args]
        kwargs = {k: _column(_wrap(v).eval(table), table) if isinstance(v, Expr) else v for k, v in self.kwargs.items()}
        out = self.fn(*args, **kwargs)
        if not isinstance(out, (pa.Array, pa.ChunkedArray)):
            out = pa.array(out)
        target = getattr(self.return_dtype, "to_arrow_dtype", lambda: None)()
        return out.cast(target) if target is not None and out.type != target else out

    def __repr__(self):
        return f"{getattr(self.fn, '__name__', 'udf')}({', '.join(map(repr, self.args))})"


class _ClassUDF:
    """A callable-class UDF's instance, built on first use in each worker process (the
    few most recent kept, by a token the UDF carries from the driver)."""

    _instances: "collections.OrderedDict" = collections.OrderedDict()
    KEEP = 8

    def __init__(self, cls, args, kwargs):
        self.cls, self.args, self.kwargs = cls, args, kwargs
        self.__name__ = cls.__name__
        self.token = _uuid.uuid4().hex

    def __call__(self, *columns, **kw):
        instance = _ClassUDF._instances.get(self.token)
        if instance is None:
            instance = _ClassUDF._instances[self.token] = self.cls(*self.args, **self.kwargs)
            while len(_ClassUDF._instances) > self.KEEP:
                _ClassUDF._instances.popitem(last=False)
        return instance(*columns, **kw)


def udf(return_dtype) -> Callable:
    """``@udf(return_dtype=DataType.int64())`` over a function or a callable class: calling
    it with expressions (``add_one(col("x"))``) gives a ``UDFExpr``."""

    def decorate(fn_or_class):
        if isinstance(fn_or_class, type):
            class Bound:
                def __init__(self, *args, **kwargs):
                    self._udf = _ClassUDF(fn_or_class, args, kwargs)

                def __call__(self, *exprs, **kwargs):
                    return UDFExpr(self._udf, exprs, kwargs, return_dtype)

            Bound.__name__ = Bound.__qualname__ = fn_or_class.__name__
            return Bound

        def make(*exprs, **kwargs):
            return UDFExpr(fn_or_class, exprs, kwargs, return_dtype)

        make.__name__ = getattr(fn_or_class, "__name__", "udf")
        make.__wrapped__ = fn_or_class
        return make

    return decorate


def _column(value, table):
    if isinstance(value, pa.Scalar):
        return pa.array([value.as_py()] * table.num_rows, type=value.type)
    return value


class RandomExpr(Expr):
    """Uniform floats in [0, 1) per row; with a seed, task i draws from ``[seed, i]``."""

    def __init__(self, seed: Optional[int] = None, reseed_after_execution: bool = True):
        self.seed, self.reseed_after_execution = seed, reseed_after_execution

    def eval(self, table):
        rng = np.random.default_rng(None if self.seed is None else [self.seed, TASK_INDEX.get()])
        return pa.array(rng.random(table.num_rows))

    def __repr__(self):
        return "RANDOM()"


class MonotonicallyIncreasingIdExpr(Expr):
    """Ray's ids: the task index in the upper 31 bits, the row within the task below."""

    def eval(self, table):
        base = TASK_INDEX.get() << 33
        return pa.array(range(base, base + table.num_rows), type=pa.int64())

    def __repr__(self):
        return "MONOTONICALLY_INCREASING_ID()"


class UUIDExpr(Expr):
    def eval(self, table):
        return pa.array([str(_uuid.uuid4()) for _ in range(table.num_rows)], type=pa.string())

    def __repr__(self):
        return "UUID()"


class DownloadExpr(Expr):
    """The bytes at each URI (or path) of a column, read with pyarrow's filesystems."""

    def __init__(self, uri_column_name: str):
        self.uri_column_name = uri_column_name

    def eval(self, table):
        out = []
        for uri in table.column(self.uri_column_name).to_pylist():
            if uri is None:
                out.append(None)
                continue
            filesystem, path = fs.FileSystem.from_uri(uri) if "://" in uri else (fs.LocalFileSystem(), uri)
            with filesystem.open_input_stream(path) as f:
                out.append(f.read())
        return pa.array(out, type=pa.binary())

    def __repr__(self):
        return f"download({self.uri_column_name!r})"


class StarExpr(Expr):
    """Every column of the input (``star()``), for projections."""

    def eval(self, table):
        raise ValueError("star() stands for all columns; it cannot be computed as one column.")

    def __repr__(self):
        return "col(*)"


def random(*, seed: Optional[int] = None, reseed_after_execution: bool = True) -> RandomExpr:
    return RandomExpr(seed, reseed_after_execution)


def monotonically_increasing_id() -> MonotonicallyIncreasingIdExpr:
    return MonotonicallyIncreasingIdExpr()


def uuid() -> UUIDExpr:
    return UUIDExpr()


def download(uri_column_name: str, **kwargs) -> DownloadExpr:
    return DownloadExpr(uri_column_name)


def star() -> StarExpr:
    return StarExpr()


_AST_OPS = {
    ast.Add: Operation.ADD, ast.Sub: Operation.SUB, ast.Mult: Operation.MUL, ast.Div: Operation.DIV,
    ast.Mod: Operation.MOD, ast.FloorDiv: Operation.FLOORDIV, ast.Gt: Operation.GT, ast.Lt: Operation.LT,
    ast.GtE: Operation.GE, ast.LtE: Operation.LE, ast.Eq: Operation.EQ, ast.NotEq: Operation.NE,
    ast.And: Operation.AND, ast.Or: Operation.OR, ast.BitAnd: Operation.AND, ast.BitOr: Operation.OR,
    ast.In: Operation.IN, ast.NotIn: Operation.NOT_IN,
}


class _IsNan(Expr):
    def __init__(self, operand: Expr):
        self.operand = operand

    def eval(self, table):
        return pc.is_nan(self.operand.eval(table))


#: The functions a string predicate may call (Ray's expression evaluator's).
_CALLS = {
    "is_null": lambda e: e.is_null(),
    "is_not_null": lambda e: e.is_not_null(),
    "is_nan": _IsNan,
    "is_in": lambda e, values: e.is_in(values.value),
}


def parse(text: str) -> Expr:
    """A string predicate such as ``"id > 3 and name != 'x'"`` as an expression."""

    def conv(node):
        if isinstance(node, ast.Name):
            return ColumnExpr(node.id)
        if isinstance(node, ast.Constant):
            return LiteralExpr(node.value)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            return LiteralExpr([conv(e).value for e in node.elts])
        if isinstance(node, ast.BinOp):
            return BinaryExpr(_AST_OPS[type(node.op)], conv(node.left), conv(node.right))
        if isinstance(node, ast.BoolOp):
            out = conv(node.values[0])
            for v in node.values[1:]:
                out = BinaryExpr(_AST_OPS[type(node.op)], out, conv(v))
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
            return UnaryExpr(Operation.NOT, conv(node.operand))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = conv(node.operand)
            if isinstance(node.op, ast.UAdd):
                return inner
            return LiteralExpr(-inner.value) if isinstance(inner, LiteralExpr) else BinaryExpr(Operation.MUL, inner, LiteralExpr(-1))
        if isinstance(node, ast.Attribute):  # a dotted column name, "a.b"
            return ColumnExpr(ast.unparse(node))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS:
            args = [conv(a) for a in node.args]
            return _CALLS[node.func.id](*args)
        if isinstance(node, ast.Compare):
            out, left = None, conv(node.left)
            for op, right in zip(node.ops, node.comparators):
                right = conv(right)
                term = BinaryExpr(_AST_OPS[type(op)], left, right)
                out = term if out is None else BinaryExpr(Operation.AND, out, term)
                left = right
            return out
        raise ValueError(f"Unsupported expression: {ast.unparse(node)}")

    return conv(ast.parse(text, mode="eval").body)


def evaluate(expr: Expr, table: pa.Table):
    """``expr`` over ``table`` as a column (a scalar result is repeated for every row)."""
    out = expr.eval(table)
    if isinstance(out, pa.Scalar):
        out = pa.array([out.as_py()] * table.num_rows, type=out.type)
    return out


__all__ = ["AliasExpr", "BinaryExpr", "ColumnExpr", "DownloadExpr", "Expr", "LiteralExpr", "MonotonicallyIncreasingIdExpr",
           "Operation", "RandomExpr", "StarExpr", "UDFExpr", "UUIDExpr", "UnaryExpr", "col", "download", "lit",
           "monotonically_increasing_id", "random", "star", "udf", "uuid"]
