"""Sends OpenTelemetry GenAI spans to a Sequin server with the official Python SDK and its
OTLP/HTTP exporter (protobuf encoding), as an instrumented agent would.

Usage: genai_spans.py ENDPOINT WRITE_KEY

Three support conversations, with fixed event times (2024-06-01), on the GenAI semantic
conventions (invoke_agent, chat, execute_tool; gen_ai.conversation.id, gen_ai.agent.name,
gen_ai.tool.name, error.type, and the opt-in gen_ai.input.messages / gen_ai.output.messages):

- conv-a: a refund tool fails, the user restates the request, the agent transfers to a human;
- conv-b: answered and thanked;
- conv-c: the agent answers and the user never comes back (a premature exit once the
  watermark passes the idle limit: conv-d, an hour later, moves it).

Prints a JSON summary; exits non-zero if any export failed.
"""

import base64
import json
import sys

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import Status, StatusCode

endpoint, key = sys.argv[1], sys.argv[2]
T0 = 1_717_200_000 * 10**9  # 2024-06-01T00:00:00Z, in ns
results = []


class RecordingExporter(OTLPSpanExporter):
    def export(self, spans):
        result = super().export(spans)
        results.append(result)
        return result


auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
exporter = RecordingExporter(endpoint=f"{endpoint}/v1/traces", headers={"Authorization": auth})
provider = TracerProvider(resource=Resource.create({"service.name": "support-agent"}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("sequin-genai-test")


def messages(role, text):
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])


def seconds(s):
    return T0 + int(s * 10**9)


def chat(conv, at, user, agent):
    span = tracer.start_span(
        "chat gpt-4o",
        start_time=seconds(at),
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.conversation.id": conv,
            "gen_ai.input.messages": messages("user", user),
            "gen_ai.output.messages": messages("assistant", agent),
        },
    )
    span.end(end_time=seconds(at + 2))


def tool(conv, at, name, error=None):
    span = tracer.start_span(
        f"execute_tool {name}",
        start_time=seconds(at),
        attributes={
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.conversation.id": conv,
            "gen_ai.tool.name": name,
        },
    )
    if error:
        span.set_attribute("error.type", error)
        span.set_status(Status(StatusCode.ERROR, f"{name} failed: {error}"))
    span.end(end_time=seconds(at + 1))


def conversation(conv, at, steps):
    agent = tracer.start_span(
        "invoke_agent support",
        start_time=seconds(at),
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "support",
            "gen_ai.conversation.id": conv,
        },
    )
    for step in steps:
        step()
    agent.end(end_time=seconds(at + 60))


conversation("conv-a", 0, [
    lambda: chat("conv-a", 0, "I want a refund for order 77, the lamp arrived broken.", "Let me look at order 77."),
    lambda: tool("conv-a", 3, "refund_order", error="timeout"),
    lambda: chat("conv-a", 20, "Please refund order 77. The lamp I got is broken.", "I am sorry, I cannot process it."),
    lambda: tool("conv-a", 25, "transfer_to_human_agents"),
])
conversation("conv-b", 100, [
    lambda: chat("conv-b", 100, "Where is my order 12?", "Let me check."),
    lambda: tool("conv-b", 103, "get_order_status"),
    lambda: chat("conv-b", 110, "Thanks, that is all.", "You're welcome!"),
])
conversation("conv-c", 200, [
    lambda: chat("conv-c", 200, "Can I change the card on my account?", "Yes: open Settings, then Payment."),
])
conversation("conv-d", 3800, [
    lambda: chat("conv-d", 3800, "Hello, I have a question about baggage.", "Sure, what would you like to know?"),
])
provider.shutdown()

ok = all(r == SpanExportResult.SUCCESS for r in results)
print(json.dumps({"exports": len(results), "ok": ok}))
sys.exit(0 if ok and results else 1)
