"""The architecture's pictures and the table of services (README.md, docs/architecture.md) are
what `python -m tools.architecture` draws from the catalogue, the messaging table, the saga's
definition and the contracts today, and every Mermaid picture in them keeps to the simple
syntax that code hosts draw: declared nodes with quoted labels, then arrows between them."""

import re
from pathlib import Path

import pytest
from ordermesh.saga import SagaDefinition

from services import catalogue, messaging
from tools import architecture
from tools.architecture import FILES, Flowchart, render, sections

ROOT = Path(__file__).resolve().parents[2]
ID = r"[A-Za-z][A-Za-z0-9_]*"
LABEL = r'"[^"\n]*"'
# Mermaid's words that cannot be node ids (`end` closes a subgraph, `class` styles a node...).
RESERVED = {"end", "subgraph", "direction", "click", "style", "class", "classDef", "linkStyle"}
RESERVED |= {"default", "call", "href", "graph", "flowchart"}
SHAPES = [("[[", "]]"), ("([", "])"), ("[(", ")]"), ("{{", "}}"), ("[", "]")]
NODE = re.compile(
    rf"(?P<id>{ID})(?:"
    + "|".join(rf"{re.escape(open_)}{LABEL}{re.escape(close)}" for open_, close in SHAPES)
    + ")"
)
EDGE = re.compile(rf"(?P<source>{ID}) (?:-->|-\.->)(?:\|{LABEL}\|)? (?P<target>{ID})")


def _pictures(text: str) -> list[list[str]]:
    return [
        block.splitlines()
        for block in re.findall(r"^```mermaid\n(.*?)^```$", text, flags=re.S | re.M)
    ]


def test_the_committed_pictures_and_table_are_what_the_generator_draws():
    rendered = sections({name for found in FILES.values() for name in found})

    for path in FILES:
        committed = (ROOT / path).read_text()
        assert render(path, committed, rendered) == committed, (
            f"{path} is stale: run `python -m tools.architecture` (or `make gen`) and commit"
        )


@pytest.mark.parametrize("path", sorted(FILES))
def test_every_picture_declares_its_nodes_then_links_them(path: str):
    pictures = _pictures((ROOT / path).read_text())

    assert pictures, f"{path} has no picture"
    for lines in pictures:
        assert re.fullmatch(r"flowchart (LR|TD)", lines[0]), lines[0]
        declared: set[str] = set()
        for line in (line.strip() for line in lines[1:]):
            if node := NODE.fullmatch(line):
                assert node["id"] not in RESERVED, line
                assert node["id"] not in declared, f"declared twice: {line}"
                declared.add(node["id"])
            else:
                edge = EDGE.fullmatch(line)
                assert edge, f"neither a node nor an arrow Mermaid is sure to read: {line!r}"
                assert {edge["source"], edge["target"]} <= declared, f"undeclared node: {line}"


def test_a_name_that_could_break_a_picture_is_written_safely():
    chart = Flowchart("LR")
    odd = chart.node("queue", 'q."<instance>"')
    other = chart.node("svc", "end")
    chart.edge(odd, other, 'said "no"', "<br>")

    lines = [line.strip() for line in chart.render().splitlines()]

    assert lines[2] == 'queue_q___instance__["q.#quot;#lt;instance#gt;#quot;"]'
    assert lines[3] == 'svc_end["end"]'
    assert lines[4] == 'queue_q___instance__ -->|"said #quot;no#quot;<br/>#lt;br#gt;"| svc_end'


def test_an_arrow_to_a_node_never_declared_is_refused():
    chart = Flowchart("LR")
    chart.node("svc", "user")

    with pytest.raises(ValueError, match="svc_order"):
        chart.edge("svc_user", "svc_order")


def test_a_file_without_its_markers_is_refused_by_name():
    with pytest.raises(ValueError, match=r"README\.md: no section 'services-diagram'"):
        render("README.md", "# a README with no markers\n", sections(FILES["README.md"]))


def test_the_table_of_services_has_a_row_per_entry_of_the_catalogue():
    table = architecture.services_table().splitlines()[2:]

    assert [row.split("|")[1].strip(" `") for row in table] == [s.name for s in catalogue.CATALOGUE]


@pytest.mark.parametrize(
    "definition",
    [d for found in messaging.sagas().values() for d in found],
    ids=lambda d: d.name,
)
def test_the_saga_picture_shows_every_step_its_replies_and_its_compensation(
    definition: SagaDefinition,
):
    drawn = architecture.sagas()

    for step in definition.steps:
        assert step.state_name in drawn
        for reply in (step.succeeded, step.failed, step.compensated):
            if reply is not None:
                assert f'"{reply.DESCRIPTOR.name}"' in drawn, reply.DESCRIPTOR.full_name
        assert f"undo {step.name}" in drawn or step.compensation is None
