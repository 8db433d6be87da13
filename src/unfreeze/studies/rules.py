"""Verdict rules: small expressions over an analysis' quantities, written in the study file.

``holds = "slope_low > 0 and (interaction_p >= 0.05 or interaction_eta2 < 0.06)"``: names
are the analysis' quantities, numbers are numbers; allowed are comparisons (< <= > >= ==
!=, chained), ``and`` / ``or`` / ``not``, ``+ - * /``, parentheses and the functions
``min``, ``max`` and ``abs``. Nothing else parses (no attribute access, no calls to anything
else), so a study file can never run code. A quantity that could not be computed (NaN:
one seed gives no interval) makes the verdict "inconclusive" rather than silently false.

The verdict: "holds" when ``holds`` is true; otherwise "partly" when ``partly`` is true;
otherwise "does not hold here"; "inconclusive" when a quantity either rule reads is missing.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import UnfreezeError

HOLDS, PARTLY, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "partly", "does not hold here", "inconclusive"
VERDICTS = (HOLDS, PARTLY, DOES_NOT_HOLD, INCONCLUSIVE)
FUNCTIONS: dict[str, Callable[..., float]] = {"min": min, "max": max, "abs": abs}
_COMPARE = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


# a rule is a sentence, not a program: bounded, so that parsing and evaluating it never recurse too deep
MAX_RULE_CHARS = 2000
MAX_RULE_DEPTH = 50


def _parse(rule: str, where: str) -> ast.Expression:
    if len(rule) > MAX_RULE_CHARS:
        raise UnfreezeError(
            f"{where}: the rule is {len(rule):,} characters long; a rule holds at most "
            f"{MAX_RULE_CHARS:,}. Write it as a few comparisons joined by and/or."
        )
    try:
        tree = ast.parse(rule.strip(), mode="eval")
    except (RecursionError, MemoryError):
        raise UnfreezeError(
            f"{where}: the rule nests too deeply to read. Write it as a few comparisons joined by and/or."
        ) from None
    except SyntaxError as exc:
        raise UnfreezeError(
            f'{where}: {rule!r} is not a rule ({exc.msg}). Write e.g. "gap_low > -0.01 and params_ratio < 0.05".'
        ) from None
    if _depth(tree) > MAX_RULE_DEPTH:
        raise UnfreezeError(
            f"{where}: the rule nests deeper than {MAX_RULE_DEPTH} levels (operators and "
            "parentheses). Write it as a few comparisons joined by and/or."
        )
    for node in ast.walk(tree):
        allowed = (
            ast.Expression,
            ast.BoolOp,
            ast.And,
            ast.Or,
            ast.UnaryOp,
            ast.Not,
            ast.USub,
            ast.UAdd,
            ast.Compare,
            ast.BinOp,
            ast.Name,
            ast.Load,
            ast.Constant,
            ast.Call,
            *_COMPARE,
            *_ARITH,
        )
        if not isinstance(node, allowed):
            raise UnfreezeError(
                f"{where}: {rule!r} uses {type(node).__name__}, which a rule may not. Rules use "
                "quantities, numbers, comparisons, and/or/not, + - * / and min/max/abs."
            )
        if isinstance(node, ast.Constant) and (
            isinstance(node.value, bool) or not isinstance(node.value, (int, float))
        ):
            raise UnfreezeError(f"{where}: {rule!r} holds the constant {node.value!r}; rules compare numbers.")
        if isinstance(node, ast.Call) and (
            not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords or not node.args
        ):
            raise UnfreezeError(f"{where}: {rule!r} calls something other than min(...), max(...) or abs(...).")
    return tree


def _depth(tree: ast.AST) -> int:
    """How deep the tree nests, counted without recursion (a deep tree is what is being guarded against)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def names_in(rule: str, where: str = "rule") -> list[str]:
    """The quantity names a rule reads, in order of appearance."""
    tree = _parse(rule, where)
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return list(dict.fromkeys(n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in calls))


def check_rule(rule: str, quantities: set[str] | None, where: str) -> None:
    """Parse ``rule``; with ``quantities``, every name it reads must be one of them (one line otherwise)."""
    names = names_in(rule, where)
    if quantities is None:
        return
    unknown = [n for n in names if n not in quantities]
    if unknown:
        raise UnfreezeError(
            f"{where}: {rule!r} reads {unknown[0]!r}, which this analysis does not compute. "
            f"Quantities: {', '.join(sorted(quantities))}."
        )


def evaluate(rule: str, values: Mapping[str, float]) -> bool | None:
    """The rule's truth for ``values``; None when it depends on a quantity that is missing or NaN.

    Three-valued (Kleene) logic: a comparison with a missing quantity is unknown, ``a or b``
    is true when either is true, ``a and b`` false when either is false, whatever the other.
    """
    missing = {n for n in names_in(rule) if _missing(values.get(n))}
    known = {n: float(v) for n, v in values.items() if n not in missing and not _missing(v)}
    result = _eval(_parse(rule, "rule").body, known)
    return None if result is None else bool(result)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _eval(node: ast.AST, values: Mapping[str, float]):
    """Numbers (NaN for a missing quantity) and truth values (None: unknown)."""
    if isinstance(node, ast.BoolOp):
        results = [_eval(v, values) for v in node.values]
        if isinstance(node.op, ast.And):
            return False if any(r is False for r in results) else (None if any(r is None for r in results) else True)
        return True if any(r is True for r in results) else (None if any(r is None for r in results) else False)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, values)
        if isinstance(node.op, ast.Not):
            return None if operand is None else not operand
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.Compare):
        left = _eval(node.left, values)
        outcome: bool | None = True
        for op, right_node in zip(node.ops, node.comparators):
            right = _eval(right_node, values)
            if _missing(left) or _missing(right):
                outcome = None if outcome is not False else False
            elif not _COMPARE[type(op)](left, right):
                return False
            left = right
        return outcome
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, values), _eval(node.right, values)
        if _missing(left) or _missing(right) or (isinstance(node.op, ast.Div) and right == 0):
            return math.nan
        return _ARITH[type(node.op)](left, right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):  # _parse allows calls by name only
        args = [_eval(a, values) for a in node.args]
        if any(_missing(a) for a in args):
            return math.nan
        return FUNCTIONS[node.func.id](*args)
    if isinstance(node, ast.Name):
        return values.get(node.id, math.nan)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):  # _parse allows numbers only
        return float(node.value)
    raise AssertionError(f"unexpected node {node!r}")  # _parse allows nothing else


@dataclass
class Verdict:
    """The verdict, the truth of each rule (None: not decidable), and the quantities that were missing."""

    verdict: str
    holds: bool | None
    partly: bool | None
    missing: list[str]


def decide(rules: Mapping[str, str], values: Mapping[str, float]) -> Verdict:
    """Apply a study's ``holds`` and ``partly`` rules to the analysis' quantities: "holds" when ``holds`` is
    true, else "partly" when ``partly`` is true, else "does not hold here"; "inconclusive" when the rule that
    decides is unknown (it depends on a quantity that could not be computed)."""
    holds = evaluate(rules["holds"], values)
    partly = evaluate(rules["partly"], values) if rules.get("partly") else False
    read = names_in(rules["holds"]) + (names_in(rules["partly"]) if rules.get("partly") else [])
    missing = [n for n in dict.fromkeys(read) if _missing(values.get(n))]
    if holds is None or (not holds and partly is None):
        return Verdict(INCONCLUSIVE, holds, partly, missing)
    if holds:
        return Verdict(HOLDS, holds, partly, missing)
    return Verdict(PARTLY if partly else DOES_NOT_HOLD, holds, partly, missing)


__all__ = [
    "DOES_NOT_HOLD",
    "HOLDS",
    "INCONCLUSIVE",
    "PARTLY",
    "VERDICTS",
    "Verdict",
    "check_rule",
    "decide",
    "evaluate",
    "names_in",
]
