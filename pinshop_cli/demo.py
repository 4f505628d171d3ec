"""`demo`: ingest -> index -> match -> recommend on sample_data/, the first thing a new user
runs. The sample has no real shoppers, so the demo generates synthetic ones (see synth.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import PinshopError
from .index.hnsw import IndexManifest, build_indexes
from .ingestion.config import IngestConfig, IngestSummary
from .ingestion.pipeline import ingest
from .io.events import ingest_events
from .look.audit import AuditReport, audit
from .look.complete import CompleteTheLook, complete
from .look.duplicates import DuplicateClusters, find_duplicates
from .look.similar import LookAlikes, similar
from .progress import NullProgress, Progress
from .recommendation.api import evaluate, recommend
from .recommendation.config import Evaluation, Recommendation
from .retrieval.match import MatchResult, match
from .retrieval.retriever import Retriever
from .synth.events import SynthConfig, generate_for_workspace
from .workspace.storage import query_arrow, sql_path


@dataclass
class DemoResult:
    workspace: Path
    ingest: IngestSummary
    indexes: list[IndexManifest]
    index_notes: list[str]  # e.g. that every index was up to date (a second demo)
    match: MatchResult
    user: str  # the most active synthetic shopper, whose recommendations are shown
    recommendations: list[Recommendation]
    evaluation: Evaluation
    look_alikes: LookAlikes  # cheaper look-alikes of the leather lounge chair
    completed: CompleteTheLook  # what goes with the boucle armchair
    duplicates: DuplicateClusters
    audit: AuditReport


def find_sample_data(explicit: str | Path | None = None) -> Path:
    if explicit:
        if not (Path(explicit) / "catalog.csv").is_file():
            raise PinshopError(f"{explicit} has no catalog.csv: --data names the sample data "
                               "folder (catalog.csv, products/, pins/)")
        return Path(explicit)
    for candidate in (Path.cwd() / "sample_data",
                      Path(__file__).resolve().parent.parent / "sample_data"):
        if (candidate / "catalog.csv").is_file():
            return candidate
    raise PinshopError("sample_data/ not found: run from a pinshop checkout or pass --data DIR")


def run_demo(workspace: str | Path = "pinshop-demo", data: str | Path | None = None,
             config: IngestConfig | None = None, progress: Progress | None = None) -> DemoResult:
    sample = find_sample_data(data)
    progress = progress or NullProgress()
    config = config or IngestConfig()
    summary = ingest(workspace, sample / "catalog.csv", sample / "pins", config, progress)
    index_notes: list[str] = []
    manifests = build_indexes(workspace, notes=index_notes)
    pins = sorted((sample / "pins").glob("*.jpg"))
    result = match(pins, text="green velvet sofa", workspace=workspace, top_k=3,
                   detector=config.detector)
    progress.note("generating 200 synthetic shoppers' events for the recommender")
    events = Path(workspace) / "synthetic-events.parquet"
    generate_for_workspace(events, SynthConfig(users=200, events=20_000), workspace)
    ingest_events(events, workspace)
    user = query_arrow(f"SELECT user_id FROM read_parquet({sql_path(events)}) "
                       "GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1"
                       ).column("user_id")[0].as_py()
    recommendations, evaluation = recommend(workspace, user), evaluate(workspace)
    retriever = Retriever(workspace)
    try:
        look = (similar("P006", cheaper=True, retriever=retriever),
                complete("P005", retriever=retriever), find_duplicates(retriever=retriever),
                audit(retriever=retriever))
    finally:
        retriever.close()
    return DemoResult(Path(workspace).resolve(), summary, manifests, index_notes, result, user,
                      recommendations, evaluation, *look)
