"""The engine: the one Python API the HTTP service and the CLI share.

It owns the store, the live catalog (shoplm/engine/catalog.py: the items in memory and the
row space every answer is computed over), the search pipeline (encoder, FAISS, BM25) and the
behaviour side (shoplm/engine/scoring.py, mixed by shoplm/recommend/blend.py). Every write goes to the store first, in one transaction, and
only then into memory and the indexes, so an acknowledged write is durable and the very
next request sees it (read-your-writes, no batching window).

Several engines can serve one store (`shoplm serve --workers N`): each committed write is
published to `peers` as a small change (`{"items": ids}` for items written or deleted,
`{"popularity": gains}`, ...), and the other engines `apply` it, re-reading those items
from the store, so they converge within
milliseconds of the write's answer.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import polars as pl

from shoplm.atomic import dir_lock
from shoplm.data.aggregates import history_bucket, item_popularity
from shoplm.config import Settings
from shoplm.errors import InvalidRecords, NotFound
from shoplm.engine.ads import Ad, rank_ads
from shoplm.data.experiments import Arm, Experiment, ExperimentError
from shoplm.engine.attribution import ImpressionLog, ListIds
from shoplm.engine.experiments import results as experiment_results
from shoplm.engine.catalog import LiveCatalog
from shoplm.engine.background import Rebuilt
from shoplm.engine.follow import Follower
from shoplm.engine.listing import Page, PageRequest, search_page
from shoplm.engine.lists import ListName, ShopLists
from shoplm.engine.pick import Rec, pick, pick_from, reasons
from shoplm.engine.rules import Merchandising, Plan, category_of
from shoplm.engine.scoring import UserModelScorer, text_scores
from shoplm.recommend.blend import Blend, popularity_prior, zscore
from shoplm.recommend.sequences import recency_weights
from shoplm.engine.profile import Profile, build_profile, nearest_categories
from shoplm.data.records import Event, FieldProblem, Item
from shoplm.data.rules import Rule, Synonym
from shoplm.search.facets import FacetColumns, Schema
from shoplm.search.fusion import Fusion
from shoplm.search.index import ItemFilter
from shoplm.lm.vectors import matvec, rows_at
from shoplm.search.spelling import Speller
from shoplm.search.suggest import Suggester, Suggestion, clicked_queries
from shoplm.search.pipeline import SearchPipeline, ensure_indexes
from shoplm.store.analytics import analytics
from shoplm.store.base import Impression, Store


log = logging.getLogger(__name__)

UNKNOWN_ITEM = "an item_id in the catalog (unknown item: create it with POST /v1/items first)"
UNKNOWN_LIST = "the list_id of a result list this shop's service answered (copy it from that answer), or none"


class ModelState(NamedTuple):
    """What a reload swaps, as one reference: a request reads it once and keeps its version."""

    scorer: UserModelScorer | None
    blend: Blend
    rows: np.ndarray  # int64[n_model_items]: row of each model item in the vector index, -1 if gone


class Engine:
    def __init__(self, settings: Settings, store: Store, search: SearchPipeline | None = None,
                 scorer: UserModelScorer | None = None, change_id: int | None = None,
                 items: Sequence[Item] | None = None):
        self.settings = settings
        self.store = store
        # The feed's newest change before the catalog below was read: `follow` applies the later ones.
        self.change_id = store.last_change_id() if change_id is None else change_id
        self.announced: set[int] = set()  # ids of the model_reloaded changes this engine made itself
        self.follower: Follower | None = None
        self._lock = threading.RLock()  # guards the in-memory catalog and indexes against concurrent writers
        # `items`: the catalog as the caller read it with `change_id` (a million items take seconds to read twice)
        self.catalog = LiveCatalog(store.items() if items is None else items, search.vectors if search is not None else None)
        self.peers: list[Callable[[dict[str, Any]], None]] = []  # told of every committed write
        self._categories: tuple | None = None  # (catalog version, names, vectors)
        self.search_pipeline = search
        self.schema = Schema.from_settings(settings)
        self._columns = FacetColumns(self.schema)
        self._speller = Speller(search.lexical) if search is not None else None
        self._suggestions = Rebuilt(self._build_suggester, lambda: self.catalog.version, settings.suggest_refresh_s,
                                    "suggest")
        self._lists = Rebuilt(self._build_lists, lambda: self.catalog.version, settings.lists_refresh_s, "lists")
        self.list_ids = ListIds(store.secret("list_ids"))
        self._experiments: tuple[float, tuple[Experiment, ...]] | None = None
        self._arm_models: dict[str, ModelState] = {}  # an experiment arm's recommendation model, by directory
        self._arm_searches: dict[str, SearchPipeline] = {}  # an arm's search model beside the configured one
        self.impressions = ImpressionLog(store, settings.impression_sample_rate, settings.impression_flush_s)
        self.model = ModelState(scorer, Blend.load(scorer.directory if scorer else None), np.zeros(0, dtype=np.int64))
        self.merchandising = Merchandising(store, search.lexical if search is not None else None,
                                           settings.rules_refresh_s)  # rules and synonyms (shoplm/engine/rules.py)
        if search is not None:
            self._sync_rows()
            self.refresh_popularity()

    @classmethod
    def open(cls, settings: Settings, store: Store) -> "Engine":
        """The serving engine: the store's catalog in the indexes of `search_index_dir`, built
        unless the directory already holds them for exactly this catalog (embeddings come from
        the cache, so a rebuild encodes nothing new), and the trained model if one is configured.
        Several processes may open engines on one directory at once (`shoplm serve --workers N`,
        a Ray job's workers): they take turns under a lock, so one builds, the others find the
        indexes current, and none reads the directory while another swaps it in."""
        change_id = store.last_change_id()  # before the catalog is read: no write falls in between
        items = store.items()
        if items:
            with dir_lock(settings.search_index_dir):
                ensure_indexes(items, settings, settings.search_index_dir)
                search = SearchPipeline.open(settings.search_index_dir, settings)
        else:  # a new shop: empty indexes in memory, filled by POST /v1/items as items arrive
            search = SearchPipeline.empty(settings)
        scorer = UserModelScorer(settings.recommend_model, settings.device) if settings.recommend_model else None
        return cls(settings, store, search, scorer, change_id, items)

    def follow(self, **listener_options) -> "Follower":
        """Apply the catalog writes of every other host from now on (shoplm/engine/follow.py);
        on a store without a change feed (SQLite, memory) this says so and follows nothing."""
        if self.follower is None:
            self.follower = Follower(self, **listener_options)
        return self.follower

    @property
    def items(self) -> dict[str, Item]:
        """The catalog in memory, by item_id."""
        return self.catalog.items

    @property
    def popularity(self) -> np.ndarray:
        """float64[rows]: time-decayed popularity in the vector index's row order."""
        return self.catalog.popularity

    # --- row space -------------------------------------------------------------------------
    def _sync_rows(self) -> None:
        """Grow row-space arrays after items were added to the vector index."""
        self.catalog.grow()
        self.model = self._model_state(self.model.scorer, self.model.blend)
        for key, state in list(getattr(self, "_arm_models", {}).items()):  # an updated item moved to a new row
            self._arm_models[key] = self._model_state(state.scorer, state.blend)

    def _model_state(self, scorer: UserModelScorer | None, blend: Blend) -> ModelState:
        if scorer is None:
            return ModelState(None, blend, np.zeros(0, dtype=np.int64))
        return ModelState(scorer, blend, self.catalog.rows(scorer.item_ids))

    def reload_model(self, directory) -> None:
        """Swap in a newly trained model directory atomically: the new state is built aside
        and replaces the old one in a single assignment; requests in flight keep the old."""
        self._load_model(directory)
        if self.store.change_feed:  # the other hosts load it too (at the same path)
            self.announced.add(self.store.announce("model_reloaded", {"directory": str(directory)}))
        self._publish({"model": str(directory)})

    def _load_model(self, directory) -> None:
        scorer = UserModelScorer(directory, self.settings.device)
        with self._lock:
            self.model = self._model_state(scorer, Blend.load(directory))

    def refresh_popularity(self) -> None:
        """Popularity of every row, recomputed from all the events in the store (other hosts' included)."""
        if self.search_pipeline is None:
            return
        pop = item_popularity(self.store.events_frame(), self.settings.event_weights,
                              self.settings.popularity_half_life_days)  # read outside the lock: requests go on
        with self._lock:
            self.catalog.set_popularity(pop.iter_rows())

    # --- catalog -------------------------------------------------------------------------
    def get_item(self, item_id: str) -> Item:
        item = self.catalog.get(item_id)
        if item is None:
            raise NotFound(f"no item with item_id {item_id!r}; create it with POST /v1/items first")
        return item

    def upsert_items(self, items: Sequence[Item]) -> int:
        """Store, then encode and index: searchable, recommendable and similar-able at once."""
        with self._lock:
            written = self.store.upsert_items(items)
            self._take_items(items)
        self._publish({"items": [item.item_id for item in items]})
        return written

    def _take_items(self, items: Sequence[Item]) -> None:
        """Stored items into memory and the indexes (the caller holds the lock); an updated
        item keeps its popularity on its new row."""
        self.catalog.take(items)
        if self.search_pipeline is not None:
            ids = [item.item_id for item in items]
            kept = [(i, self.popularity[r]) for i, r in zip(ids, self.catalog.rows(ids)) if r >= 0]
            self.search_pipeline.add(items)
            for pipeline in self._arm_searches.values():  # in step: the same rows in every pipeline
                pipeline.add(items)
            self.catalog.changed()  # again, now that the index holds them: caches built meanwhile are void
            self._sync_rows()
            for item_id, value in kept:
                self.popularity[self.catalog.row(item_id)] = value

    def delete_item(self, item_id: str) -> None:
        with self._lock:
            if not self.store.delete_items([item_id]):
                raise NotFound(f"no item with item_id {item_id!r}")
            self._drop_items([item_id])
        self._publish({"items": [item_id]})

    def _drop_items(self, item_ids: Sequence[str]) -> None:
        self.catalog.drop(item_ids)
        if self.search_pipeline is not None:
            self.search_pipeline.remove(list(item_ids))
            for pipeline in self._arm_searches.values():
                pipeline.remove(list(item_ids))
            self.catalog.changed()

    # --- merchandising (shoplm/engine/rules.py) -------------------------------------------
    def put_rule(self, rule: Rule) -> Rule:
        """Store the rule (a new one without an id, else replacing it) if its item is in the
        catalog; every engine of the store answers by it from its next request."""
        if rule.item_id not in self.catalog:
            self._refresh([rule.item_id])  # created through another engine a moment ago?
        if rule.item_id not in self.catalog:
            raise InvalidRecords("rule", {0: [FieldProblem("item_id", rule.item_id, UNKNOWN_ITEM)]})
        return self._merchandised(self.store.put_rule(rule))

    def delete_rule(self, rule_id: int) -> None:
        if not self.store.delete_rule(rule_id):
            raise NotFound(f"no rule with id {rule_id}; list them with GET /v1/admin/rules")
        self._merchandised(None)

    def put_synonym(self, synonym: Synonym) -> Synonym:
        """Store the synonym; the next query's BM25 terms are expanded by it (nothing is re-indexed)."""
        return self._merchandised(self.store.put_synonym(synonym))

    def delete_synonym(self, synonym_id: int) -> None:
        if not self.store.delete_synonym(synonym_id):
            raise NotFound(f"no synonym with id {synonym_id}; list them with GET /v1/admin/synonyms")
        self._merchandised(None)

    def _merchandised(self, record: Any) -> Any:
        self.merchandising.reload()
        self._publish({"merchandising": True})
        return record

    # --- experiments (shoplm/data/experiments.py, shoplm/engine/experiments.py) ----------------
    def experiments(self) -> list[Experiment]:
        """The experiments as stored, re-read at most every `rules_refresh_s` seconds."""
        cached = self._experiments
        if cached is None or time.monotonic() - cached[0] > self.settings.rules_refresh_s:
            cached = self._experiments = (time.monotonic(), tuple(self.store.experiments()))
        return list(cached[1])

    def put_experiment(self, experiment: Experiment) -> Experiment:
        """Create or replace an experiment; at most one runs at a time (so every visitor is in
        at most one arm, and arms compare cleanly)."""
        root = self.settings.models_dir.resolve()
        needs = {"recommend_model": ("params.json", "a trained model", "train one with `shoplm train recommend --out DIR`"),
                 "search_model": ("modules.json", "a sentence-transformers model",
                                  "fine-tune one with `shoplm train search --out DIR`")}
        for i, arm in enumerate(experiment.arms):
            for kind, (marker, what, how) in needs.items():
                name = getattr(arm, kind)
                directory = (root / name).resolve() if name is not None else None
                if directory is not None and (not directory.is_relative_to(root) or not (directory / marker).is_file()):
                    raise ExperimentError(f"arms[{i}].{kind}", f"no {what} in {directory} ({marker} missing); {how} "
                                          f"inside SHOPLM_MODELS_DIR ({root})")
        if experiment.status in ("running", "promoted"):
            other = next((e for e in self.store.experiments()
                          if e.status in ("running", "promoted") and e.id != experiment.id), None)
            if other is not None:
                raise ExperimentError("status", f"experiment {other.id} ({other.name!r}) is {other.status}; stop it first")
            for arm in experiment.arms:  # the arms' search models: encoded now, not in a visitor's request
                self.arm_search(arm)
        stored = self.store.put_experiment(experiment)
        self._experiments = None
        return stored

    def arm_model(self, arm: Arm) -> ModelState | None:
        """The arm's recommendation model (loaded once, beside the configured one), or None."""
        if arm.recommend_model is None:
            return None
        directory = (self.settings.models_dir / arm.recommend_model).resolve()
        state = self._arm_models.get(str(directory))
        if state is None:
            scorer = UserModelScorer(directory, self.settings.device)
            with self._lock:
                state = self._arm_models[str(directory)] = self._model_state(scorer, Blend.load(directory))
        return state

    def arm_search(self, arm: Arm | None) -> SearchPipeline | None:
        """The search pipeline of the arm's search model, or None (the configured one serves).
        Built on first use on each process (the catalog encoded through the embedding cache,
        so once per model and machine; the admin call that starts the experiment and
        `warm()` do it before any visitor waits), then kept in step with every catalog change."""
        if arm is None or arm.search_model is None or self.search_pipeline is None:
            return None
        directory = str((self.settings.models_dir / arm.search_model).resolve())
        pipeline = self._arm_searches.get(directory)
        if pipeline is None:
            with self._lock:  # no catalog change between reading the rows and joining the updates
                pipeline = self._arm_searches.get(directory)
                if pipeline is None:
                    pipeline = self._arm_searches[directory] = self.search_pipeline.with_model(Path(directory))
        return pipeline

    def arm(self, user_id: str | None, session_id: str | None) -> tuple[str, Arm] | None:
        """("experiment:arm", the arm) of the visitor in the running (or promoted) experiment, if any."""
        for experiment in self.experiments():
            arm = experiment.assign(user_id or session_id)
            if arm is not None:
                return experiment.label(arm), arm
        return None

    def experiment_results(self, experiment: Experiment, since: float | None = None,
                           until: float | None = None) -> dict[str, Any]:
        """Per arm results of the lists shown in [since, until) (shoplm/engine/experiments.py)."""
        return experiment_results(experiment, self.analytics(since, until)["arms"])

    # --- attribution ---------------------------------------------------------------------
    def shown(self, surface: str, item_ids: Sequence[str], query: str | None = None, user_id: str | None = None,
              session_id: str | None = None, arm: str | None = None) -> str:
        """A new `list_id` for a list about to be answered, its impression logged (batched)."""
        list_id = self.list_ids.new()
        query = " ".join(query.casefold().split()) or None if query else None  # analytics group queries by it
        self.impressions.record(Impression(list_id, time.time(), surface, tuple(item_ids), query, user_id, session_id, arm))
        return list_id

    def analytics(self, since: float | None = None, until: float | None = None) -> dict[str, Any]:
        """shoplm/store/analytics.py's report, this process's buffered impressions written first."""
        self.impressions.flush()
        return analytics(self.store, since, until, self.settings.attribution_window_s)

    def close(self) -> None:
        """Stop following the feed, write the impressions still buffered, then close the store."""
        if self.follower is not None:
            self.follower.stop()
        self.impressions.close()
        self.store.close()

    # --- behaviour -----------------------------------------------------------------------
    def add_events(self, events: Sequence[Event]) -> int:
        """Store the batch (all or nothing) and return how many were new. Events for items
        not in the catalog are refused, naming the position of each in the batch."""
        unknown = sorted({e.item_id for e in events if e.item_id is not None and e.item_id not in self.catalog})
        if unknown:  # created through another engine a moment ago, its change not yet here?
            self._refresh(unknown)
        problems: dict[int, list[FieldProblem]] = {}
        for i, e in enumerate(events):
            if e.item_id is not None and e.item_id not in self.catalog:
                problems.setdefault(i, []).append(FieldProblem("item_id", e.item_id, UNKNOWN_ITEM))
            if e.list_id is not None and not self.list_ids.valid(e.list_id):
                problems.setdefault(i, []).append(FieldProblem("list_id", e.list_id, UNKNOWN_LIST))
        if problems:
            raise InvalidRecords("events", problems)
        stored = self.store.add_events(events)
        if self.search_pipeline is not None and stored:
            gains: dict[str, float] = {}
            for event in events:
                if event.item_id is not None:
                    gains[event.item_id] = gains.get(event.item_id, 0.0) + self.settings.event_weights.get(event.event_type, 0.0)
            self._add_popularity(gains)
            self._publish({"popularity": gains})
        return stored

    def _add_popularity(self, gains: dict[str, float]) -> None:
        with self._lock:
            self.catalog.add_popularity(gains)

    def history(self, user_id: str | None = None, session_id: str | None = None) -> list[Event]:
        """The actor's events, oldest first, straight from the store (so always current)."""
        return self.store.actor_events(user_id=user_id, session_id=session_id)

    def _item_history(self, events: Sequence[Event]) -> list[tuple[str, float]]:
        """(item_id, event weight) of the events that name a catalog item, oldest first."""
        weights = self.settings.event_weights
        return [(e.item_id, weights.get(e.event_type, 1.0)) for e in events if e.item_id in self.catalog]

    def behaviour_scores(self, history: Sequence[tuple[str, float]], model: ModelState | None = None) -> np.ndarray:
        """z-scored P(item | history) over rows: the trained model where it knows the item,
        the zero-shot text score elsewhere (new items); -inf for rows that cannot be scored."""
        state = model or self.model
        vectors = self.catalog.vectors
        alive = self.catalog.alive()

        def text() -> np.ndarray:
            return zscore(text_scores(self.catalog.indexed_rows(i for i, _ in history), vectors), alive)

        if state.scorer is None:
            return text()
        model = state.scorer.scores(history, state.rows, len(vectors))
        known = np.isfinite(model)
        if not known.any():
            return text()
        out = zscore(model, known & alive)  # -inf off the live rows the model knows
        if (alive & ~known).any():  # new items: their text score, standardised over the catalog
            out[~known] = text()[~known]
        return out  # (where the model knows every live item, no text pass over the catalog)

    # --- answers ---------------------------------------------------------------------------
    def search(self, query: str, user_id: str | None = None, session_id: str | None = None,
               filter: ItemFilter | None = None, k: int = 10, keep: np.ndarray | None = None,
               fusion: Fusion | None = None, rerank: bool = True, pipeline: SearchPipeline | None = None) -> list[Rec]:
        """Hybrid retrieval, re-ranked by the actor's behaviour so far: P(y | x, z). With no
        history it is exactly the query-only ranking. `keep` (bool[rows]) narrows it further;
        `pipeline`: an experiment arm's (`arm_search`) instead of the configured one."""
        self._require_search()
        # An unavailable item is never returned, whatever the caller's filter says.
        filter = replace(filter, available_only=True) if filter is not None else ItemFilter(available_only=True)
        depth = max(k, self.settings.hybrid_depth)
        if keep is not None and len(keep) < self.catalog.n_rows:  # rows indexed since the caller's mask: not in it
            keep = np.concatenate([keep, np.zeros(self.catalog.n_rows - len(keep), dtype=bool)])
        hits = (pipeline or self.search_pipeline).search([query], depth, filter, keep=keep, fusion=fusion, rerank=rerank)
        ids = [i for i in hits.ids[0] if i]
        if not ids:
            return []
        base = np.asarray(hits.scores[0][: len(ids)], dtype=np.float64)
        history = self._item_history(self.history(user_id, session_id)) if (user_id or session_id) else []
        weight = self.model.blend.search_personal.get(history_bucket(len(history)), 0.0)
        scores = zscore(base) if len(ids) > 1 else base
        if history and weight > 0:
            personal = self.behaviour_scores(history)[self.catalog.rows(ids)]
            scores = scores + weight * np.where(np.isfinite(personal), personal, 0.0)
        order = np.argsort(-scores, kind="stable")[:k]
        reason = "matches your query and your history" if history and weight > 0 else "matches your query"
        return [Rec(ids[i], float(scores[i]), reason) for i in order]

    def search_page(self, request: PageRequest) -> Page:
        """A results page: total, facets, sort and pages over a query's whole result set, or a
        browse page without a query (shoplm/engine/listing.py defines each)."""
        self._require_search()
        return search_page(self, request)

    def facet_columns(self) -> FacetColumns:
        """The catalog's facet and filter fields as columns over the rows, appended to as rows are added."""
        columns = self._columns
        if columns.n_rows < self.catalog.n_rows:
            with self._lock:
                columns = self._columns = self._columns.extended(self.catalog.index.ids, self.items)
        return columns

    def speller(self) -> Speller:
        return self._speller

    def suggest(self, prefix: str, k: int = 5, user_id: str | None = None, session_id: str | None = None,
                items: int = 3) -> tuple[list[Suggestion], list[Rec]]:
        """Query suggestions for what a shopper typed (shoplm/search/suggest.py), the brands
        and categories of their history counting more, and the BM25 top `items` of the best
        suggestion (no encoder pass: autocomplete answers within milliseconds)."""
        self._require_search()
        boost = None
        if user_id or session_id:
            profile = build_profile(self.history(user_id, session_id), self.items, self.settings.event_weights)
            names = [name for name, _ in profile.top_brands[:3]] + [name for name, _ in profile.top_categories[:3]]
            boost = {name: self.settings.suggest_personal_boost for name in names} or None
        suggestions = self._suggester().suggest(prefix, k, boost)
        if not items or not prefix.strip():
            return suggestions, []
        lexical = self.search_pipeline.lexical
        text = suggestions[0].text if suggestions else prefix
        scores = lexical.scores(text)  # float32[n_lexical]
        if not len(scores):
            return suggestions, []
        servable = self.catalog.servable()
        rows = self.search_pipeline.lexical_rows()
        scores = np.where((rows >= 0) & servable[np.maximum(rows, 0)], scores, 0.0)
        top = np.argpartition(-scores, min(items, len(scores)) - 1)[:items]  # the best few, not a sort of all
        top = top[np.lexsort((top, -scores[top]))]
        return suggestions, [Rec(lexical.ids[p], float(scores[p]), f"matches {text}") for p in top if scores[p] > 0]

    def warm(self) -> None:
        """Build what the first requests would otherwise wait for: the query suggestions, the
        speller's vocabulary, the facet columns and the shop's lists (seconds on a large catalog)."""
        if self.search_pipeline is not None:
            for experiment in self.experiments():
                if experiment.status in ("running", "promoted"):
                    for arm in experiment.arms:
                        self.arm_search(arm)
            self._suggester()
            self.shop_lists()
            self._speller.correct("warm")
            self.facet_columns()

    def _suggester(self) -> Suggester:
        """Built from the catalog and the store's clicked queries on first use; rebuilt in the
        background (the old one answering meanwhile) once the catalog changed or
        `suggest_refresh_s` passed (shoplm/engine/background.py)."""
        return self._suggestions.get()

    def _build_suggester(self) -> Suggester:
        started = time.monotonic()
        frame = self.store.events_frame()
        actors = frame.filter(pl.col("query").is_not_null()).select("user_id", "session_id").unique()
        searched = frame.join(actors, on=["user_id", "session_id"], how="semi", nulls_equal=True)
        events = [Event(**row) for row in searched.select(
            "timestamp", "event_type", "user_id", "session_id", "item_id", "query").iter_rows(named=True)]
        suggester = Suggester.build(clicked_queries(events, self.settings.search_event_window_s), list(self.items.values()))
        log.info("query suggestions: %d texts from %d events and %d items in %.1f s", len(suggester), len(events),
                 len(self.items), time.monotonic() - started)
        return suggester

    def browse_scores(self, user_id: str | None, session_id: str | None) -> np.ndarray:
        """float64[rows]: a browse page's order for the actor: `recommend`'s scores (their
        history through the model, with the popularity prior) or plain popularity."""
        history = self._item_history(self.history(user_id, session_id)) if (user_id or session_id) else []
        return self._scores(history)

    def reasons_for(self, rows: Sequence[int], user_id: str | None, session_id: str | None) -> list[str]:
        history = self._item_history(self.history(user_id, session_id)) if (user_id or session_id) else []
        return reasons([int(r) for r in rows], history, self.catalog)

    def _scores(self, history: Sequence[tuple[str, float]], model: ModelState | None = None) -> np.ndarray:
        prior = zscore(popularity_prior(self.popularity), self.catalog.alive())
        if not history:
            return prior
        model = model or self.model
        return self.behaviour_scores(history, model) + model.blend.popularity.get(history_bucket(len(history)), 0.0) * prior

    def recommend(self, user_id: str | None = None, session_id: str | None = None, item_id: str | None = None,
                  filter: ItemFilter | None = None, k: int = 10, exclude_seen: bool = False,
                  model: ModelState | None = None) -> list[Rec]:
        """Next items for the actor, optionally in the context of an item page or a category
        (`filter.category`). Already-purchased items and the latest item (the context item, or
        the one just seen) are always left out; `exclude_seen` leaves out every item the actor
        interacted with."""
        self._require_search()
        events = self.history(user_id, session_id) if (user_id or session_id) else []
        history = self._item_history(events)
        if item_id is not None:
            self.get_item(item_id)
            history = history + [(item_id, 1.0)]
        scores = self._scores(history, model)
        mask = self.catalog.servable() & np.isfinite(scores)
        if filter is not None:
            index = self.catalog.index
            mask &= filter.mask(index.category, index.price, index.available)
        seen = {e.item_id for e in events if e.item_id and (exclude_seen or e.event_type == "purchase")}
        if history:
            seen.add(history[-1][0])  # the page in front of the visitor, or the item they just saw
        mask[self.catalog.indexed_rows(seen)] = False
        plan = self.merchandising.plan("recommend", self.catalog,
                                       category=category_of(filter.category if filter is not None else None, ()))
        return self._pick(scores, mask, k, history, plan)

    def similar(self, item_id: str, k: int = 10) -> list[Rec]:
        """Items whose text is closest to the item's, the item itself left out."""
        self._require_search()
        item = self.get_item(item_id)
        row = self.catalog.row(item_id)
        vectors = self.catalog.vectors
        scores = matvec(vectors, vectors[row])  # (rows,)
        mask = self.catalog.servable()
        mask[row] = False
        return self._pick(scores, mask, k, [], self.merchandising.plan("similar", self.catalog),
                          why=f"similar to {item.title}")

    # --- the shop's lists (shoplm/engine/lists.py) ------------------------------------------
    def _build_lists(self) -> ShopLists:
        started = time.monotonic()
        lists = ShopLists.build(self.store.events_frame(), list(self.items.values()), self.catalog.rows,
                                self.catalog.n_rows, self.settings)
        log.info("lists and complements: %d rows, %d co-purchase pairs in %.1f s", self.catalog.n_rows,
                 lists.complements.matrix.nnz // 2, time.monotonic() - started)
        return lists

    def shop_lists(self) -> ShopLists:
        """Trending, new arrivals, best sellers and complements, rebuilt in the background
        every `lists_refresh_s` or after a catalog change."""
        self._require_search()
        return self._lists.get()

    def shop_list(self, name: ListName, user_id: str | None = None, session_id: str | None = None,
                  filter: ItemFilter | None = None, k: int = 10, model: ModelState | None = None) -> list[Rec]:
        """A list (`trending`, `new`, `best_sellers`), of a category with `filter.category`.
        A visitor with history gets its top `list_candidates` items in their personalised
        order (`recommend`'s scores), anyone else the list's own order."""
        n = self.catalog.n_rows
        key = self.shop_lists().key(name, n)
        mask = self.catalog.servable() & np.isfinite(key)
        if filter is not None:
            index = self.catalog.index
            mask &= filter.mask(index.category, index.price, index.available)
        category = category_of(filter.category if filter is not None else None, ())
        plan = self.merchandising.plan("recommend", self.catalog, category=category)
        label = {"trending": "trending", "new": "new arrival", "best_sellers": "best seller"}[name]
        label += f" in {category}" if category else ""
        history = self._item_history(self.history(user_id, session_id)) if (user_id or session_id) else []
        ranked = np.where(mask, key, -np.inf)
        if not history:
            return self._pick(ranked, mask, k, [], plan, why=label)
        candidates = np.flatnonzero(mask)
        top = candidates[np.lexsort((candidates, -ranked[candidates]))][: self.settings.list_candidates]
        personal = np.full(n, -np.inf)
        personal[top] = self._scores(history, model)[top]
        shortlist = np.zeros(n, dtype=bool)
        shortlist[top] = True
        return self._pick(personal, mask & shortlist & np.isfinite(personal), k, history, plan,
                          why=f"{label}, in the order of your activity")

    def bought_together(self, item_ids: Sequence[str], k: int = 10, user_id: str | None = None,
                        session_id: str | None = None, fill: bool = False,
                        model: ModelState | None = None) -> list[Rec]:
        """Complements of a cart (or one item): items bought in the same baskets as these,
        never one of them; an item never bought borrows the complements of its nearest items
        by text (shoplm/recommend/complements.py). `fill` (the cart recommendations of
        `/v1/recommend?items=`) fills the rest of k with `recommend`'s next items after the
        visitor's history and the cart; without it the list holds only complements."""
        for item_id in item_ids:
            self.get_item(item_id)
        context = self.catalog.indexed_rows(item_ids)
        complements = self.shop_lists().complements
        n = self.catalog.n_rows
        vectors = self.catalog.vectors
        weights = complements.context_weights(context, vectors, self.settings.complements_text_neighbours,
                                              self.settings.complements_text_floor)
        together = complements.weighted(weights, n)
        sources = list(weights)
        mask = self.catalog.servable()
        mask[context] = False
        mask[sources] = False  # a new item's stand-ins are its look-alikes: substitutes, not complements
        strong = together > 0
        plan = self.merchandising.plan("recommend", self.catalog)

        def why(row: int) -> str | None:
            if not strong[row]:
                return None
            source = complements.strongest(sources, row)
            item = self.catalog.item_at(source) if source is not None else None
            if item is None:
                return "often bought together"
            return f"often bought with {'items like ' if source not in context else ''}{item.title}"

        if not fill:
            return self._pick(together, mask & strong, k, [], plan, why=why)
        events = self.history(user_id, session_id) if (user_id or session_id) else []
        history = self._item_history(events) + [(item_id, self.settings.event_weights.get("add_to_cart", 1.0))
                                                for item_id in item_ids]
        behaviour = self._scores(history, model)
        # complements first, in their order; the model's next items after them
        finite = np.isfinite(behaviour)
        base = behaviour[finite].max() if finite.any() else 0.0
        scores = np.where(strong, base + 1.0 + together / max(together.max(), 1e-12), behaviour)
        return self._pick(scores, mask & np.isfinite(scores), k, history, plan, why=why)

    def rank(self, item_ids: Sequence[str], user_id: str | None = None, session_id: str | None = None,
             model: ModelState | None = None) -> tuple[list[Rec], list[str]]:
        """A list the shop supplies, re-ranked for the visitor: (every supplied id in the
        catalog, best first by `recommend`'s scores, ties in the supplied order; the ids that
        are not in the catalog). Nothing is added or left out: no rule applies to it."""
        self._require_search()
        known = [i for i in item_ids if i in self.catalog]
        unknown = [i for i in item_ids if i not in self.catalog]
        history = self._item_history(self.history(user_id, session_id)) if (user_id or session_id) else []
        scores = self._scores(history, model)
        rows = self.catalog.rows(known)
        values = np.where(rows >= 0, scores[np.maximum(rows, 0)], -np.inf)
        values = np.where(np.isfinite(values), values, -np.inf)
        order = np.argsort(-values, kind="stable")
        notes = reasons([int(rows[i]) for i in order if rows[i] >= 0], history, self.catalog)
        out, taken = [], iter(notes)
        for i in order:
            reason = next(taken) if rows[i] >= 0 else "in the supplied list"
            out.append(Rec(known[i], float(values[i]) if np.isfinite(values[i]) else -1e9, reason))
        return out, unknown

    def _pick(self, scores: np.ndarray, mask: np.ndarray, k: int, history: Sequence[tuple[str, float]],
              plan: Plan | None = None, why: str | Callable[[int], str | None] | None = None) -> list[Rec]:
        """Top-k rows under `mask`, no duplicates, at most `max_per_category` per leaf category,
        then merchandised by `plan` (hidden rows never; pins, boosts, buries; a pin passes the
        mask but not the category limit). `why`: the reason of the hits no rule placed (a
        text, or a function of the row: None keeps the history's reason)."""
        limit = self.settings.max_per_category or None
        if plan:
            mask = mask & plan.visible(len(mask))
            rows, notes = plan.top([row for row, _ in pick(scores, mask, k + plan.depth, limit, self.catalog)], mask, k)
            picked = [(row, self.catalog.item_at(row)) for row in rows]
        else:
            picked, notes = pick(scores, mask, k, limit, self.catalog), {}
        recs = self._with_reasons(picked, scores, history)
        reason = why if callable(why) else (lambda row: why)
        return [r._replace(reason=notes.get(row) or reason(row) or r.reason) for r, (row, _) in zip(recs, picked)]

    def _pick_from(self, order: np.ndarray, scores: np.ndarray, k: int, limit: int | None,
                   history: Sequence[tuple[str, float]]) -> list[Rec]:
        """`_pick` over rows already in rank order (`order`)."""
        return self._with_reasons(pick_from(order, k, limit, self.catalog), scores, history)

    def _with_reasons(self, picked: list[tuple[int, Item]], scores: np.ndarray,
                      history: Sequence[tuple[str, float]]) -> list[Rec]:
        rows = [row for row, _ in picked]
        return [Rec(item.item_id, float(scores[row]), reason)
                for (row, item), reason in zip(picked, reasons(rows, history, self.catalog))]

    def rank_ads(self, user_id: str | None = None, session_id: str | None = None, query: str | None = None,
                 item_id: str | None = None, k: int = 3) -> list[Ad]:
        """(item_id, score, relevance, bid) of sponsored items, best first: score = relevance x bid,
        where relevance is the cosine of the ad's text to the query, the context item or the
        actor's recent items. An ad under `ad_relevance_floor` is never shown, whatever its bid."""
        self._require_search()
        vectors = self.catalog.vectors
        if query:
            target = self.search_pipeline.encoder.encode_query(query)
        elif item_id:
            self.get_item(item_id)
            target = vectors[self.catalog.row(item_id)]
        else:
            history = self._item_history(self.history(user_id, session_id)) if (user_id or session_id) else []
            rows = self.catalog.indexed_rows(i for i, _ in history)
            if not rows:
                return []
            profile = recency_weights(len(rows)) @ rows_at(vectors, rows)  # (dim,)
            target = profile / max(np.linalg.norm(profile), 1e-12)
        return rank_ads(self.catalog.sponsored(), vectors, self.catalog.servable(), target,
                        self.settings.ad_relevance_floor, k, exclude=item_id)

    def _require_search(self) -> None:
        if self.search_pipeline is None:
            raise NotFound("this engine has no search index; open it with Engine.open(settings, store)")

    # --- users ---------------------------------------------------------------------------
    def profile(self, user_id: str | None = None, session_id: str | None = None) -> Profile:
        events = self.history(user_id=user_id, session_id=session_id)
        profile = build_profile(events, self.items, self.settings.event_weights, user_id=user_id,
                                session_id=session_id)
        if self.search_pipeline is not None and not profile.is_new:
            history = self._item_history(events)
            rows = self.catalog.rows(i for i, _ in history)
            weights = np.asarray([w for (_, w), r in zip(history, rows) if r >= 0])
            names, vectors = self._category_vectors() if (rows >= 0).any() else ([], None)
            profile.nearest_categories = nearest_categories(
                rows_at(self.catalog.vectors, rows[rows >= 0]), weights, names, vectors)
        return profile

    def _category_vectors(self) -> tuple[list[str], np.ndarray | None]:
        """Category names and their embeddings, recomputed only after the catalog changed."""
        cached = self._categories
        if cached is None or cached[0] != self.catalog.version:
            names = sorted({i.category for i in self.items.values() if i.category})
            vectors = self.search_pipeline.encoder.encode([n.replace(" > ", ", ") for n in names]) if names else None
            cached = self._categories = (self.catalog.version, names, vectors)
        return cached[1], cached[2]

    def delete_user(self, user_id: str) -> int:
        """Erase every event of the user and of their sessions, the impressions of the lists
        shown to them, and everything this process derived from them; returns how many events. Histories and profiles are read from
        the store on each request, so the one derived cache is the popularity vector: it is
        recomputed from the remaining events, so no later answer depends on the user.
        (A trained model learned from its training events; retraining purges them, see
        docs/operations.md.)"""
        self.impressions.flush()  # the lists shown to them and not yet written go with the rest
        deleted = self.store.delete_user(user_id)
        if deleted and self.search_pipeline is not None:
            with self._lock:
                self.refresh_popularity()
            self._publish({"erased": True})
        return deleted

    # --- several engines over one store ----------------------------------------------------
    def _publish(self, change: dict[str, Any]) -> None:
        """Tell this process's peer workers (`shoplm serve --workers`). Where the store keeps a
        change feed, the peers follow it for catalog writes; popularity gains still go here."""
        if self.follower is not None and self.follower.listener is not None:
            change = {"popularity": change["popularity"]} if "popularity" in change else {}
            if not change:
                return
        for peer in self.peers:
            try:
                peer(change)
            except Exception:  # noqa: BLE001 - the write is committed; a peer left behind catches up at restart
                log.exception("could not send a change to a peer engine: %s", str(change)[:200])

    def _refresh(self, item_ids: Sequence[str]) -> None:
        """Make these items what the store holds now: taken if there, dropped if not. So
        changes applied in any order leave the store's state (a late "deleted X" cannot undo
        a later upsert of X)."""
        with self._lock:  # read and take together: a local write cannot land in between
            found = self.store.items(item_ids)
            gone = (set(item_ids) - {item.item_id for item in found}) & self.items.keys()
            found = [item for item in found if self.catalog.get(item.item_id) != item]  # e.g. its own write, back
            if found:
                self._take_items(found)
            if gone:
                self._drop_items(sorted(gone))

    def apply(self, change: dict[str, Any]) -> None:
        """Take a write another engine committed to the same store (what it `_publish`ed);
        nothing is written and nothing published again."""
        if "items" in change:
            self._refresh(change["items"])
        if "popularity" in change and self.search_pipeline is not None:
            self._add_popularity(change["popularity"])
        if "erased" in change and self.search_pipeline is not None:
            with self._lock:
                self.refresh_popularity()
        if "model" in change:
            self._load_model(change["model"])
        if "merchandising" in change:
            self.merchandising.reload()

    # --- health --------------------------------------------------------------------------
    def ready(self) -> bool:
        """The store answers."""
        try:
            self.store.counts()
        except Exception:  # noqa: BLE001 - any failure means not ready; /readyz reports it
            return False
        return True
