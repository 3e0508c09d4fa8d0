"""Telemetry without an exporter: the no-op tracer carries a caller's trace context through, and
the OTLP exporter a service installs when told to is importable (its protobuf modules are
opentelemetry-proto's, not the older copy xds-protos carries in the same directories)."""

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from chassis import telemetry


def test_the_otlp_exporter_and_its_protos_are_the_ones_it_was_built_with():
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope

    assert OTLPSpanExporter is not None
    assert (
        InstrumentationScope.DESCRIPTOR.full_name
        == "opentelemetry.proto.common.v1.InstrumentationScope"
    )


def test_without_an_sdk_a_callers_context_goes_on_to_what_the_work_sends():
    trace_id, span_id = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
    caller = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1))
    parent = trace.set_span_in_context(NonRecordingSpan(caller))
    with telemetry.tracer.start_as_current_span("work", context=parent):
        assert telemetry.current_traceparent() == f"00-{trace_id:032x}-{span_id:016x}-01"
        assert telemetry.current_ids() == (f"{trace_id:032x}", f"{span_id:016x}")
    assert telemetry.current_traceparent() is None
    assert telemetry.current_ids() is None
