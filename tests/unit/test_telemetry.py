"""Telemetry without an exporter: the no-op tracer carries a caller's trace context through, and
the OTLP exporter a service installs when told to is importable (its protobuf modules are
opentelemetry-proto's, not the older copy xds-protos carries in the same directories); with
one, the sampler a service installs, and the share of new traces the gateway samples."""

import os
import subprocess
import sys

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from ordermesh import telemetry


def test_the_otlp_exporter_and_its_protos_are_the_ones_it_was_built_with():
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope

    assert OTLPSpanExporter is not None
    assert (
        InstrumentationScope.DESCRIPTOR.full_name
        == "opentelemetry.proto.common.v1.InstrumentationScope"
    )


TRACE_ID, SPAN_ID = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331


def callers_context(flags: int):
    """The context of a remote caller's span, sampled or not as `flags` says."""
    caller = SpanContext(TRACE_ID, SPAN_ID, is_remote=True, trace_flags=TraceFlags(flags))
    return trace.set_span_in_context(NonRecordingSpan(caller))


def test_without_an_sdk_a_callers_context_goes_on_to_what_the_work_sends():
    trace_id, span_id = TRACE_ID, SPAN_ID
    with telemetry.tracer.start_as_current_span("work", context=callers_context(1)):
        assert telemetry.current_traceparent() == f"00-{trace_id:032x}-{span_id:016x}-01"
        assert telemetry.current_ids() == (f"{trace_id:032x}", f"{span_id:016x}")
    assert telemetry.current_traceparent() is None
    assert telemetry.current_ids() is None


def test_a_trace_not_sampled_goes_on_but_names_no_trace_to_look_up():
    trace_id, span_id = TRACE_ID, SPAN_ID
    with telemetry.tracer.start_as_current_span("work", context=callers_context(0)):
        # The caller's decision travels on (the next hop must not sample it either) ...
        assert telemetry.current_traceparent() == f"00-{trace_id:032x}-{span_id:016x}-00"
        # ... but log lines and the console name no trace: it was never exported.
        assert telemetry.current_ids() is None


def sampler_installed(**env: str) -> str:
    """The description of the sampler a service installs with `env` (in a process of its own:
    a tracer provider is installed once per process)."""
    script = (
        "from opentelemetry import trace\n"
        "from ordermesh import telemetry\n"
        "assert telemetry.configure(service='s', instance='s-1')\n"
        "print(trace.get_tracer_provider().sampler.get_description())\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environ |= {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", **env}
    done = subprocess.run(
        [sys.executable, "-c", script], env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_service_samples_one_new_trace_in_ten_and_follows_its_callers_by_default():
    described = sampler_installed()
    assert described.startswith("ParentBased{root:TraceIdRatioBased{0.1}")


def test_the_standard_variables_choose_another_sampler():
    assert sampler_installed(OTEL_TRACES_SAMPLER="always_on") == "AlwaysOnSampler"
    described = sampler_installed(
        OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0.5"
    )
    assert described.startswith("ParentBased{root:TraceIdRatioBased{0.5}")


@pytest.mark.parametrize(
    ("env", "ratio"),
    [
        ({}, telemetry.DEFAULT_RATIO),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}, 1.0),
        ({"OTEL_TRACES_SAMPLER": "always_off"}, 0.0),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}, 0.25),
        ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}, 1.0),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "lots"}, 1.0),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "7"}, 1.0),
    ],
)
def test_the_gateway_samples_new_traces_as_the_services_do(env, ratio):
    assert telemetry.root_ratio(env) == ratio


@pytest.mark.parametrize(
    ("traceparent", "named"),
    [
        (f"00-{'ab' * 16}-{'cd' * 8}-01", "ab" * 16),
        (f"00-{'ab' * 16}-{'cd' * 8}-00", ""),
        ("", ""),
        ("00-nonsense", ""),
        (f"00-{'ab' * 16}-{'cd' * 8}-zz", ""),
    ],
)
def test_a_consumers_log_line_names_a_trace_only_if_it_was_sampled(traceparent, named):
    assert telemetry.sampled_trace_id(traceparent) == named
