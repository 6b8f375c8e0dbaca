"""Cold-start measured through the service: held-out visitors replayed event by event.

The offline cold-user slice (`shoplm eval recommend --cold-users F`,
shoplm/recommend/evaluate.py `cold_user_slices`) scores each held-out user's event k + 1
from their first k events. `replay` does the same from outside: for each user it asks
`GET /v1/recommend` (k = 10), then posts the user's next event to `/v1/events`, one at a
time, and scores the target against the answer. With the same model, the same training
events in the store and `exclude_seen` matching `--exclude-history`, both must agree
(within 2%: the service's popularity also counts the events just posted).

    with httpx.Client(base_url=url) as client:
        figures = replay(client, visitors, ks=(0, 1, 2, 3, 5))
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Protocol, Sequence

from shoplm.data.records import Event
from shoplm.progress import Progress, quiet


class Client(Protocol):  # httpx.Client and FastAPI's TestClient
    def get(self, url: str, **kwargs: Any) -> Any: ...

    def post(self, url: str, **kwargs: Any) -> Any: ...

    def delete(self, url: str, **kwargs: Any) -> Any: ...


def visitors(events: Sequence[Event], actors: set[str], weights: Mapping[str, float]) -> dict[str, list[Event]]:
    """actor -> its item events oldest first (equal times in input order), of the actors named;
    events whose type weighs 0 are left out, as `sequences.build_sequences` leaves them out.
    An actor is the user_id, else "session:<session_id>" (the sequences' naming)."""
    out: dict[str, list[tuple[float, int, Event]]] = {}
    for order, event in enumerate(events):
        actor = event.user_id if event.user_id is not None else f"session:{event.session_id}"
        if actor in actors and event.item_id is not None and weights.get(event.event_type, 0.0) > 0:
            out.setdefault(actor, []).append((event.timestamp, order, event))
    return {actor: [e for _, _, e in sorted(rows, key=lambda r: (r[0], r[1]))] for actor, rows in out.items()}


def replay(client: Client, users: Mapping[str, Sequence[Event]], ks: Sequence[int], exclude_seen: bool = True,
           k: int = 10, headers: Mapping[str, str] | None = None, admin: Mapping[str, str] | None = None,
           progress: Progress = quiet) -> dict[str, dict]:
    """{str(k): {"ndcg@10", "recall@10", "cases"}} over the users with more than k events.
    With `admin` (the admin key's headers) each user is erased (`DELETE /v1/users/{id}`) once
    replayed, so the next one meets the store as it was: the offline protocol, where no
    held-out user's events count for another. Without it the store keeps them, as a live
    shop would."""
    sums: dict[int, list[float]] = {n: [0.0, 0.0, 0] for n in ks}
    last = max(ks)
    for done, events in enumerate(users.values(), start=1):
        who = {"user_id": events[0].user_id} if events[0].user_id is not None else {"session_id": events[0].session_id}
        for step in range(min(last, len(events) - 1) + 1):
            if step in sums:
                params = {**who, "k": k, "exclude_seen": str(exclude_seen).lower()}
                answer = client.get("/v1/recommend", params=params, headers=headers)
                answer.raise_for_status()
                shown = [hit["item_id"] for hit in answer.json()["items"]]
                target = events[step].item_id
                if target in shown:
                    rank = shown.index(target) + 1
                    sums[step][0] += 1.0 / math.log2(rank + 1)
                    sums[step][1] += 1.0
                sums[step][2] += 1
            if step < last:
                e = events[step]
                posted = client.post("/v1/events", headers=headers, json={"events": [{
                    **who, "event_type": e.event_type, "item_id": e.item_id, "timestamp": e.timestamp}]})
                posted.raise_for_status()
        if admin is not None and events[0].user_id is not None:
            client.delete(f"/v1/users/{events[0].user_id}", headers=admin).raise_for_status()
        progress("replay held-out visitors", done, len(users))
    return {str(n): {"ndcg@10": total / cases if cases else 0.0, "recall@10": hits / cases if cases else 0.0,
                     "cases": int(cases)} for n, (total, hits, cases) in sums.items()}
