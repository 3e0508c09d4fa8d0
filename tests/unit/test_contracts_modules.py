"""Where a contract's generated code is (ordermesh.contracts): the runtime's own files under
`ordermesh.contracts`, every other by its proto path; protoc's output adopted by a project uses
the runtime's modules, never a copy of its own (the default descriptor pool takes a file once)."""

from __future__ import annotations

from pathlib import Path

from ordermesh import contracts


def test_the_runtimes_files_are_its_modules_and_the_rest_top_level():
    assert contracts.module_name("ops/v1/ops_service.proto", "_pb2_grpc") == (
        "ordermesh.contracts.ops.v1.ops_service_pb2_grpc"
    )
    assert contracts.module_name("common/v1/money.proto") == "common.v1.money_pb2"
    assert contracts.module("common/v1/options.proto").DESCRIPTOR.package == "common.v1"


def test_protocs_imports_of_the_runtimes_files_are_rewritten_once():
    code = (
        "from common.v1 import options_pb2 as common_dot_v1_dot_options__pb2\n"
        "from common.v1 import money_pb2 as common_dot_v1_dot_money__pb2\n"
        "    from ops.v1 import ops_service_pb2\n"
        "import common.v1.options_pb2\n"
        "x: common.v1.options_pb2.Access\n"
    )

    rewritten = contracts.python_imports(code)

    assert rewritten == (
        "from ordermesh.contracts.common.v1 import options_pb2 as common_dot_v1_dot_options__pb2\n"
        "from common.v1 import money_pb2 as common_dot_v1_dot_money__pb2\n"
        "    from ordermesh.contracts.ops.v1 import ops_service_pb2\n"
        "import ordermesh.contracts.common.v1.options_pb2\n"
        "x: ordermesh.contracts.common.v1.options_pb2.Access\n"
    )
    assert contracts.python_imports(rewritten) == rewritten


def test_adopting_protocs_output_drops_its_copies_of_the_runtimes_files(tmp_path: Path):
    (tmp_path / "common" / "v1").mkdir(parents=True)
    (tmp_path / "common" / "v1" / "options_pb2.py").write_text("copy\n")
    (tmp_path / "common" / "v1" / "options_pb2.pyi").write_text("copy\n")
    own = tmp_path / "common" / "v1" / "money_pb2.py"
    own.write_text("from common.v1 import options_pb2 as common_dot_v1_dot_options__pb2\n")

    contracts.adopt(tmp_path)

    assert sorted(p.name for p in (tmp_path / "common" / "v1").iterdir()) == ["money_pb2.py"]
    assert own.read_text().startswith("from ordermesh.contracts.common.v1 import options_pb2")
