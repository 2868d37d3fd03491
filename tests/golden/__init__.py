"""Golden answers of every document in `operations/`, for the differential test.

Every document is run through the real app (create_app + httpx's ASGI transport,
bearer tokens from issue_dev_token) against the demo data seeded for FIXED_DATE,
as several users, at several page sizes, following cursors to later pages and,
for the documents that take an id, with ids the user may see and ids it may not.
Each answer (HTTP status, data and errors) is kept in `tests/golden/<Document>.json`.

    python -m tests.golden capture            # (re)write the goldens, on SQLite
    python -m tests.golden check [--database-url URL]   # compare without writing

`tests/test_operations_golden.py` runs the same cases and compares field for field.

The cases are generated, not listed: later cases take their cursors and ids from
earlier answers (an endCursor, the ids on a list page), so a change in what one
answer holds shows up as a difference in that answer first.

Clock: nothing a query reads depends on the wall clock at query time, only on the
seeded data, which `seed_demo` derives from FIXED_DATE alone (the read path never
calls datetime.now; projectedNextInvoice.billedAt, planChangePreview.effectiveAt and
pendingChange.effectiveAt come from the subscription's stored period end, and
overdue/auto-close/billing are CLI jobs, not reads). Checked by capturing under
time-machine with the wall clock at the seed day 00:00 and 23:59, 30 days before the
seed, and 40 days and 3 years after the real date: the goldens were the same. So no
field is normalized; `compare` looks at every field.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Awaitable, Callable, cast

from graphql import OperationType, parse

from db.engine import create_engine, read_sessions
from db.migrate import upgrade
from services.demo import seed_demo

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "operations"
GOLDEN_DIR = Path(__file__).resolve().parent
CAPTURE_COMMAND = "python -m tests.golden capture"

# The demo data's "today" (seed_demo is deterministic for a given date). Any fixed date
# will do; this one is in the past so that nothing in it is later than the real clock.
FIXED_DATE = date(2025, 6, 18)

OWNERS = ["owner@northwind.example", "owner@bluebird.example", "owner@cedar.example"]
MEMBER = "member@northwind.example"
STAFF = ["support@revampd.example", "billing@revampd.example"]
PARTNER_USERS = [*OWNERS, MEMBER]

# first = omitted (the document's default), explicit null (the server's default), then sizes.
OMIT = "omit"
PAGE_SIZES: list[Any] = [OMIT, None, 1, 3, 10, 100]
# Page sizes whose later pages are followed, and how many later pages.
FOLLOW: dict[int | None, int] = {1: 2, 3: 2, 10: 1}

CONN = "viewer.partner.revampdConnection"
# Per document: its cursor variables and where the list they page through is in `data`.
CURSORS: dict[str, dict[str, str]] = {
    "DashboardOverview": {},
    "Plan": {"after": f"{CONN}.invoices"},
    "PlanChangePreview": {},
    "AddOns": {"after": f"{CONN}.invoices"},
    "Tickets": {"after": f"{CONN}.tickets"},
    "Ticket": {"after": "node.messages"},
    "SubmitTicket": {"after": f"{CONN}.invoices", "payoutsAfter": f"{CONN}.payouts"},
    "Invoices": {"after": f"{CONN}.invoices"},
    "Invoice": {},
    "Wallet": {"after": f"{CONN}.wallet.entries"},
    "AffiliatePayouts": {"after": f"{CONN}.affiliatePayouts"},
    "Payouts": {"after": f"{CONN}.payouts", "transactionsAfter": f"{CONN}.subOrgTransactions"},
}
# Documents whose variables include `$filter`, and the filters to try (at page size 3).
FILTERS: dict[str, list[dict[str, Any]]] = {
    "Tickets": [
        {"status": ["OPEN", "IN_PROGRESS"]},
        {"status": ["RESOLVED", "CLOSED"], "priority": ["HIGH", "LOW"]},
        {"priority": ["HIGH"]},
        {"search": "payout"},
        {"search": "no such words anywhere"},
    ],
    "Invoices": [
        {"status": ["OPEN"]},
        {"type": ["ONE_TIME"]},
        {"status": ["PAID", "VOID", "UNCOLLECTIBLE"], "type": ["SUBSCRIPTION", "ONE_TIME"]},
        {"status": ["DRAFT"]},
    ],
    "Payouts": [
        {"status": ["AVAILABLE", "PARTIALLY_DISPOSED"]},
        {"status": ["PROCESSING"]},
        {"status": ["COMPLETED"]},
    ],
}
# Documents that take an id, and the ones that do not.
ID_DOCUMENTS = {"Ticket", "Invoice", "PlanChangePreview"}


def documents() -> dict[str, str]:
    """Document name (the file's stem) -> its text, for every query in operations/
    (the mutations change the data: tests/test_operations.py runs them; the subscriptions
    answer over a WebSocket as changes are committed, with no answer to pin: tests/test_live.py
    and tests/test_live_clients.py run them)."""
    texts = {p.stem: p.read_text() for p in sorted(OPERATIONS.glob("*.graphql"))}
    return {name: text for name, text in texts.items()
            if all(getattr(d, "operation", None) == OperationType.QUERY for d in parse(text).definitions)}


def golden_path(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.json"


def golden_names() -> set[str]:
    return {p.stem for p in GOLDEN_DIR.glob("*.json")}


def load_golden(name: str) -> list[dict[str, Any]]:
    return cast("list[dict[str, Any]]", json.loads(golden_path(name).read_text())["cases"])


def write_golden(name: str, cases: list[dict[str, Any]]) -> None:
    body = {"document": f"operations/{name}.graphql", "seedDate": FIXED_DATE.isoformat(),
            "capturedWith": CAPTURE_COMMAND, "cases": cases}
    golden_path(name).write_text(json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


# ---- the database ---------------------------------------------------------------------

async def build_database(url: str) -> None:
    """Migrate an empty database at `url` and seed the demo data for FIXED_DATE."""
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        async with read_sessions(engine)() as session:
            assert await seed_demo(session, FIXED_DATE), "the database was not empty"
    finally:
        await engine.dispose()


# ---- the cases ------------------------------------------------------------------------

Post = Callable[[str, dict[str, Any], str], Awaitable[tuple[int, Any]]]


def dig(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _size_label(size: Any) -> str:
    return "first=default" if size is OMIT else "first=null" if size is None else f"first={size}"


def _with_size(variables: dict[str, Any], size: Any) -> dict[str, Any]:
    return dict(variables) if size is OMIT else {**variables, "first": size}


@dataclass
class Runner:
    """Runs the cases of every document in order, keeping each answer."""

    post: Post
    docs: dict[str, str]
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    async def run(self, name: str, user: str, label: str, variables: dict[str, Any]) -> Any:
        status, body = await self.post(self.docs[name], variables, user)
        self.results.setdefault(name, []).append(
            {"case": f"{user} {label}", "user": user, "variables": variables, "status": status, "response": body})
        return body

    async def paged(self, name: str, user: str, label: str, variables: dict[str, Any], follow: int) -> Any:
        """A page and `follow` later ones, each after the endCursors of the one before."""
        body = first = await self.run(name, user, label, variables)
        for page in range(2, follow + 2):
            cursors = {var: dig(body.get("data"), f"{path}.pageInfo.endCursor")
                       for var, path in CURSORS[name].items()}
            cursors = {var: c for var, c in cursors.items() if c is not None}
            if not cursors:
                break
            body = await self.run(name, user, f"{label} page={page}", {**variables, **cursors})
        return first

    async def sizes(self, name: str, user: str, variables: dict[str, Any], label: str = "") -> None:
        for size in PAGE_SIZES:
            text = " ".join(x for x in (label, _size_label(size)) if x)
            await self.paged(name, user, text, _with_size(variables, size), FOLLOW.get(size, 0))


@dataclass
class Facts:
    """What the cases need to know of the demo data besides what the answers say."""

    partner_of: dict[str, str]  # a Partner user's e-mail -> its Partner's name
    retired_plan_ids: list[str]  # retired plans are not in `plans`, but can be asked about


async def run_cases(post: Post, facts: Facts) -> dict[str, list[dict[str, Any]]]:
    """Every case of every document in operations/, as {document: [case, ...]}.

    `post(document, variables, user)` -> (HTTP status, parsed body)."""
    partner_of = facts.partner_of
    docs = documents()
    r = Runner(post, docs)
    unknown = set(docs) - set(CURSORS)
    assert not unknown, (
        f"no cases are defined for {sorted(unknown)}: add them to CURSORS (and FILTERS or the id "
        f"cases) in tests/golden/__init__.py, then run `{CAPTURE_COMMAND}`")

    # Documents of the Partner's own pages (no id): every Partner user at every size,
    # Revampd staff (who have no Partner) once.
    for name in docs:
        if name in ID_DOCUMENTS:
            continue
        for user in PARTNER_USERS:
            await r.sizes(name, user, {})
        for user in STAFF:
            await r.run(name, user, "first=default", {})
        for flt in FILTERS.get(name, []):
            for user in OWNERS:
                await r.paged(name, user, f"filter={json.dumps(flt, sort_keys=True)} first=3",
                              {"first": 3, "filter": flt}, 1)

    # The ids each Partner user may see, from its own answers at first=100.
    def ids_of(name: str, user: str, path: str) -> list[dict[str, Any]]:
        for case in r.results.get(name, []):
            if case["user"] == user and case["variables"] == {"first": 100}:
                return [e["node"] for e in (dig(case["response"].get("data"), path) or {}).get("edges", [])]
        raise AssertionError(f"no first=100 case of {name} for {user}")

    tickets = {u: ids_of("Tickets", u, f"{CONN}.tickets") for u in OWNERS}
    invoices = {u: ids_of("Invoices", u, f"{CONN}.invoices") for u in OWNERS}
    others = {u: [o for o in OWNERS if partner_of[o] != partner_of[u]] for u in PARTNER_USERS}
    owner_of = {u: next(o for o in OWNERS if partner_of[o] == partner_of[u]) for u in PARTNER_USERS}

    if "Ticket" in docs:
        for user in [*PARTNER_USERS, *STAFF]:
            own = tickets[owner_of[user]] if user in owner_of else [t for o in OWNERS for t in tickets[o][:3]]
            for t in own:
                await r.run("Ticket", user, f"{t['number']} first=default", {"id": t["id"]})
            # The longest conversation a page at a time, and at other sizes.
            longest = max(own, key=lambda t: (t["messageCount"], t["number"]))
            for size in (1, 3, 100, None):
                await r.paged("Ticket", user, f"{longest['number']} {_size_label(size)}",
                              {"id": longest["id"], "first": size}, FOLLOW.get(size, 0) + (size == 1))
            if user in others:  # a ticket of another Partner reads as null
                t = tickets[others[user][0]][0]
                await r.run("Ticket", user, f"other partner's {t['number']}", {"id": t["id"]})
        user = OWNERS[0]
        await r.run("Ticket", user, "an Invoice's id", {"id": invoices[user][0]["id"]})
        await r.run("Ticket", user, "a malformed id", {"id": "not-an-id"})

    if "Invoice" in docs:
        def varied(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            """One invoice of each (type, status, payment method, with a wallet payment)."""
            seen, chosen = set(), []
            for inv in items:
                key = (inv["type"], inv["status"], inv["paymentMethod"],
                       any(p["walletEntry"] for p in inv["payments"]))
                if key not in seen:
                    seen.add(key)
                    chosen.append(inv)
            return chosen

        for user in [*PARTNER_USERS, *STAFF]:
            own = varied(invoices[owner_of[user]]) if user in owner_of else [
                i for o in OWNERS for i in varied(invoices[o])[:3]]
            for inv in own:
                await r.run("Invoice", user, inv["number"], {"id": inv["id"]})
            if user in others:
                inv = invoices[others[user][0]][0]
                await r.run("Invoice", user, f"other partner's {inv['number']}", {"id": inv["id"]})
        user = OWNERS[0]
        await r.run("Invoice", user, "a Ticket's id", {"id": tickets[user][0]["id"]})
        await r.run("Invoice", user, "a malformed id", {"id": "not-an-id"})

    if "PlanChangePreview" in docs:
        plans = dig(next(c for c in r.results["Plan"] if c["user"] == OWNERS[0])["response"]["data"], "plans")
        ids = [(p["code"], p["id"]) for p in plans] + [("retired plan", i) for i in facts.retired_plan_ids]
        for user in [*PARTNER_USERS, STAFF[0]]:
            for code, pid in ids:
                await r.run("PlanChangePreview", user, code, {"planId": pid})
        user = OWNERS[0]
        await r.run("PlanChangePreview", user, "an Invoice's id", {"planId": invoices[user][0]["id"]})
        await r.run("PlanChangePreview", user, "a malformed id", {"planId": "not-an-id"})
    return r.results


# ---- the comparison -------------------------------------------------------------------

def first_difference(golden: Any, actual: Any, path: str = "") -> str | None:
    """Where `actual` first differs from `golden` (dict keys and list items in order), or None."""
    if isinstance(golden, dict) and isinstance(actual, dict):
        for key in sorted(set(golden) | set(actual)):
            where = f"{path}.{key}" if path else key
            if key not in actual:
                return f"{where}: missing (golden: {_short(golden[key])})"
            if key not in golden:
                return f"{where}: not in the golden (now: {_short(actual[key])})"
            found = first_difference(golden[key], actual[key], where)
            if found:
                return found
        return None
    if isinstance(golden, list) and isinstance(actual, list):
        for i, (g, a) in enumerate(zip(golden, actual, strict=False)):
            found = first_difference(g, a, f"{path}[{i}]")
            if found:
                return found
        if len(golden) != len(actual):
            return f"{path}: {len(actual)} items, golden has {len(golden)}"
        return None
    if type(golden) is not type(actual) or golden != actual:
        return f"{path}: golden {_short(golden)} != now {_short(actual)}"
    return None


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 200 else text[:200] + "..."


def compare_cases(name: str, golden: list[dict[str, Any]], actual: list[dict[str, Any]]) -> str | None:
    """The first difference between two runs of a document's cases, said clearly, or None."""
    for i, (g, a) in enumerate(zip(golden, actual, strict=False)):
        for key in ("case", "user", "variables", "status", "response"):
            found = first_difference(g.get(key), a.get(key), key)
            if found:
                return f"operations/{name}.graphql, case #{i} [{g.get('case')}]: {found}"
    if len(golden) != len(actual):
        return (f"operations/{name}.graphql: {len(actual)} cases now, the golden has {len(golden)} "
                f"(if the cases changed on purpose, run `{CAPTURE_COMMAND}`)")
    return None


# ---- running it against an app ----------------------------------------------------------

async def capture(url: str) -> dict[str, list[dict[str, Any]]]:
    """Build the demo database at `url` (which must be empty) and run every case on it."""
    await build_database(url)
    return await run_all(url)


async def run_all(url: str, **settings: Any) -> dict[str, list[dict[str, Any]]]:
    """Run every case on the demo database at `url` (it only reads), on an app with `settings`."""
    from sqlalchemy import select

    from db import models as m
    from schema.base import to_global_id
    from tests.conftest import make_api

    api = await make_api(url, **settings)
    try:
        rows = await api.rows(select(m.User.email, m.Partner.name).join(m.Partner, m.Partner.id == m.User.partner_id))
        retired = await api.rows(select(m.Plan.id).where(m.Plan.retired.is_(True)).order_by(m.Plan.id))
        facts = Facts(partner_of={email: name for email, name in rows},
                      retired_plan_ids=[to_global_id("Plan", pk) for (pk,) in retired])

        async def post(document: str, variables: dict[str, Any], user: str) -> tuple[int, Any]:
            response = await api.post(document, variables, as_=user)
            return response.status_code, response.json()

        return await run_cases(post, facts)
    finally:
        await api.http.aclose()
        await api.engine.dispose()
        if api.app.app.state.revampd.tracing is not None:
            api.app.app.state.revampd.tracing.shutdown()  # sends what is left


def sqlite_url(directory: str) -> str:
    return f"sqlite+aiosqlite:///{os.path.join(directory, 'golden.db')}"
