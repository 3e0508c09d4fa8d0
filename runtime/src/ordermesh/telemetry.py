"""Traces: OpenTelemetry in every service, configured by the standard `OTEL_*` variables.

`configure(service=..., instance=...)`, called once by each service's `main()`:
- with `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, and
  `OTEL_SDK_DISABLED` not true, installs the SDK: spans batched to that endpoint over OTLP/gRPC
  (the exporter reads the other `OTEL_EXPORTER_OTLP_*` variables), sampled as
  `OTEL_TRACES_SAMPLER` says (by default `parentbased_traceidratio` at `DEFAULT_RATIO`, 10 %:
  every trace a caller sampled, and one new trace in ten; `root_ratio` says what share of new
  traces the environment asks for, so the gateway can sample as the services do), with
  the resource `service.name`, `service.instance.id` and `OTEL_RESOURCE_ATTRIBUTES`; spans
  still buffered are sent when the process exits;
- otherwise installs nothing: the API's no-op tracer, whose spans go nowhere (measured: 5 us
  a span, 10 us for a gRPC server span with the caller's context read from the metadata).

The runtime writes the spans itself, with OpenTelemetry's semantic conventions: the gRPC
server and client spans (`ordermesh.grpc`, `ordermesh.upstream`), messaging spans
(`ordermesh.outbox`, `ordermesh.consumer`) and saga steps (`ordermesh.saga`). The context
travels as W3C trace context: `traceparent` (and `tracestate`) in gRPC metadata and in AMQP
headers (`inject`, `extract`).
Logs carry the current `trace_id` and `span_id` beside the correlation id (`ordermesh.logging`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from opentelemetry import context, propagate, trace
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind, Status, StatusCode

__all__ = [
    "DEFAULT_RATIO",
    "INVALID_SPAN",
    "Link",
    "Span",
    "SpanKind",
    "Status",
    "StatusCode",
    "configure",
    "current_ids",
    "current_span",
    "current_traceparent",
    "extract",
    "inject",
    "link_to",
    "root_ratio",
    "sampled_trace_id",
    "tracer",
]

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

tracer = trace.get_tracer("ordermesh")

# The share of new traces sampled when OTEL_TRACES_SAMPLER is not set. Every trace sampled cost
# the event path 0.59x of its throughput (docs/performance.md, "The cost of tracing"), which
# suits a test of tracing, not a service's default: OpenTelemetry's own default samples all.
DEFAULT_RATIO = 0.1
_ALL = {"always_on", "parentbased_always_on"}
_NONE = {"always_off", "parentbased_always_off"}
_RATIO = {"traceidratio", "parentbased_traceidratio"}


def root_ratio(environ: Mapping[str, str]) -> float:
    """The share of new traces (no caller's decision to follow) that `environ` asks to sample:
    OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG as the SDK reads them, DEFAULT_RATIO
    when unset. A sampler this cannot read (a custom one) counts as sampling all."""
    sampler = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if not sampler:
        return DEFAULT_RATIO
    if sampler in _NONE:
        return 0.0
    if sampler in _RATIO:
        try:
            return min(max(float(environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")), 0.0), 1.0)
        except ValueError:
            return 1.0  # the SDK's own fallback for an unreadable ratio
    return 1.0


def configure(*, service: str, instance: str) -> bool:
    """Installs the SDK if the environment asks for an exporter; whether it did."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return False
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    # Resource.create adds what OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME say.
    resource = Resource.create({"service.name": service, "service.instance.id": instance})
    # None: the SDK reads OTEL_TRACES_SAMPLER itself.
    sampler = None
    if not os.environ.get("OTEL_TRACES_SAMPLER"):
        sampler = ParentBased(TraceIdRatioBased(DEFAULT_RATIO))
    provider = TracerProvider(resource=resource, sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def inject(carrier: MutableMapping[str, str]) -> None:
    """Writes the current trace context into `carrier` (gRPC metadata, AMQP headers)."""
    propagate.inject(carrier)


def extract(carrier: Mapping[str, str]) -> context.Context:
    """The trace context `carrier` holds (none: a new trace starts from it)."""
    return propagate.extract(carrier)


def current_ids() -> tuple[str, str] | None:
    """The current span's trace id and span id, in hex, if a sampled span is recording."""
    span_context = trace.get_current_span().get_span_context()
    if not (span_context.is_valid and span_context.trace_flags.sampled):
        return None  # a trace not sampled is nowhere to be looked up
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, if one is recording."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


def sampled_trace_id(traceparent: str) -> str:
    """The trace id of a W3C traceparent whose trace was sampled, else "" (a trace not sampled
    was never exported: a log line naming it would point at nothing)."""
    parts = traceparent.split("-")
    if len(parts) != 4:
        return ""
    try:
        sampled = int(parts[3], 16) & 1
    except ValueError:
        return ""
    return parts[1] if sampled else ""


def link_to(parent: context.Context) -> list[Link]:
    """A link to the span `parent` holds, if any (a consumer links to its producer)."""
    span_context = trace.get_current_span(parent).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


def current_span() -> Span:
    """The span at work (a no-op one when none is)."""
    return trace.get_current_span()
