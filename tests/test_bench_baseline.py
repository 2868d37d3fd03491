"""The benchmark's baseline (tests/bench/handwritten.py) answers what the graph answers.

`make bench` compares DashboardOverview with a hand-written endpoint; the comparison
means something only while both return the same bytes. A change to the graph's output
that the baseline does not follow fails here, not silently in the benchmark.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.bench.handwritten import create_app as handwritten_app
from tests.conftest import Api

QUERY = (Path(__file__).parent.parent / "operations" / "DashboardOverview.graphql").read_text()


@pytest.mark.parametrize("first", [1, 10, 100])
async def test_handwritten_dashboard_is_the_graphs_byte_for_byte(api: Api, first: int) -> None:
    owner = "owner@northwind.example"
    graph = await api.post(QUERY, {"first": first}, as_=owner)
    assert graph.status_code == 200 and b'"errors"' not in graph.content, graph.text
    app = handwritten_app(api.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
        try:
            baseline = await http.get(
                "/dashboard", params={"first": first}, headers={"Authorization": f"Bearer {api.tokens[owner]}"}
            )
        finally:
            await app.app.state.engine.dispose()
    assert baseline.status_code == 200, baseline.text
    assert baseline.content == graph.content
    assert baseline.headers["content-type"] == graph.headers["content-type"]
