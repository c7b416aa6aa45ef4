"""A small rule DSL rendered to SQL with :mod:`psycopg.sql`.

Rules compare a column (or an SQL expression) with a value; comparisons
combine with ``&`` and ``|``::

    rule = (Rules.Age() > 86400) & (Rules.State() == "completed")
    rule.to_sql()  # Composed: ((EXTRACT(EPOCH FROM now() - "updated_at") > 86400) AND ...)

Values are always sent as literals through psycopg, never pasted as text.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql


class Rule:
    """A column (``field``) or, in subclasses, an SQL expression."""

    def __init__(self, field: str) -> None:
        self.field = field

    def to_sql(self) -> sql.Composable:
        return sql.Identifier(self.field)

    def _compare(self, op: str, value: Any) -> Condition:
        return Condition(self, op, value)

    def __gt__(self, value: Any) -> Condition:
        return self._compare(">", value)

    def __ge__(self, value: Any) -> Condition:
        return self._compare(">=", value)

    def __lt__(self, value: Any) -> Condition:
        return self._compare("<", value)

    def __le__(self, value: Any) -> Condition:
        return self._compare("<=", value)

    def __eq__(self, value: Any) -> Condition:  # type: ignore[override]
        return self._compare("=", value)

    def __ne__(self, value: Any) -> Condition:  # type: ignore[override]
        return self._compare("<>", value)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.field!r})"


class Condition(Rule):
    """``left op value``; combine with ``&`` (AND) and ``|`` (OR)."""

    def __init__(self, left: Rule, op: str, value: Any) -> None:
        super().__init__(left.field)
        self.left, self.op, self.value = left, op, value

    def to_sql(self) -> sql.Composable:
        return sql.SQL("({} {} {})").format(
            self.left.to_sql(), sql.SQL(self.op), sql.Literal(self.value)
        )

    def __and__(self, other: Condition) -> Condition:
        return _Combined("AND", self, other)

    def __or__(self, other: Condition) -> Condition:
        return _Combined("OR", self, other)

    def __repr__(self) -> str:
        return f"({self.left!r} {self.op} {self.value!r})"


class _Combined(Condition):
    def __init__(self, op: str, *parts: Condition) -> None:
        Rule.__init__(self, "")
        self.op, self.parts = op, parts

    def to_sql(self) -> sql.Composable:
        joined = sql.SQL(f" {self.op} ").join(p.to_sql() for p in self.parts)
        return sql.SQL("({})").format(joined)

    def __repr__(self) -> str:
        return f" {self.op} ".join(repr(p) for p in self.parts).join("()")
