"""`python -m ordermesh new-service NAME`: a new service of a project built on the runtime, working
and tested from its first minute, in the project's layout:

- its contract, `proto/NAME/v1/`: `NAME_service.proto` (an API to record, read and list a
  resource, each RPC with its REST rule, access level and request bounds; a retried create
  with the same idempotency key records nothing twice) and `events.proto` (the resource's
  Created event, with its route);
- its package, `services/NAME/`, with the files every service has (domain, service, store,
  api, consumers, config, main, `__main__`): the service publishes its Created event through
  the outbox in the transaction that records the resource, and consumes it through its inbox
  to accept the resource once (the pattern of every reaction to an event);
- its tests: the domain's rules (unit) and the whole path through the gateway in the session's
  system (e2e: REST, the broker, the access levels);
- its entry in the catalogue (`services/catalogue.py`), its subscription in
  `services/messaging.py`, its generated package in `pyproject.toml`'s lists (the mypy
  override of generated code, the import-linter contracts), and checkov's accepted findings
  for its workloads (`deploy/checkov/*.baseline.json`, as the catalogue's first service's).

Then `make gen` generates its code, the gateway's routes, the documents and the manifests
from those, and `make up` runs it. It refuses a name that is not a lowercase word, or one the
project has already, and writes nothing then.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess  # nosec B404 - the project's formatter, this interpreter's
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import jinja2

__all__ = ["NewService", "Refused", "main"]

TEMPLATES = Path(__file__).with_name("templates") / "new_service"
NAME = re.compile(r"^[a-z][a-z0-9]{1,30}$")


class Refused(ValueError):
    """The service cannot be made as asked; nothing was written."""


@dataclass(frozen=True)
class NewService:
    name: str
    resource: str = "item"
    description: str = ""

    @property
    def words(self) -> dict[str, str]:
        """What the templates name, from the service's and the resource's names."""
        resources = f"{self.resource}s"
        description = self.description or (
            f"The {self.name} service: {resources} recorded, each accepted once its creation "
            "came back through the broker."
        )
        return {
            "name": self.name,
            "Name": self.name.capitalize(),
            "resource": self.resource,
            "Resource": self.resource.capitalize(),
            "RESOURCE": self.resource.upper(),
            "resources": resources,
            "Resources": resources.capitalize(),
            "RESOURCES": resources.upper(),
            # Wrapped for a docstring and a proto comment (the lines after the first).
            "description": "\n".join(textwrap.wrap(description, 96)),
            "description_comment": "\n// ".join(textwrap.wrap(description, 96)),
        }

    def files(self) -> dict[str, str]:
        """Each new file's path (from the project's root) and the template it is made from."""
        n = self.name
        package = {
            f"services/{n}/{module}.py": f"{module}.py.j2"
            for module in (
                "__init__", "__main__", "config", "domain", "store", "service", "api",
                "consumers", "main",
            )
        }  # fmt: skip
        return {
            f"proto/{n}/v1/{n}_service.proto": "service.proto.j2",
            f"proto/{n}/v1/events.proto": "events.proto.j2",
            **package,
            f"tests/unit/test_{n}_domain.py": "test_domain.py.j2",
            f"tests/e2e/test_{n}.py": "test_e2e.py.j2",
        }

    def make(self, root: Path) -> list[str]:
        """Writes the service into the project at `root`; what it wrote and changed."""
        if not NAME.match(self.name) or not NAME.match(self.resource):
            raise Refused(
                "a service's and a resource's names are lowercase words of 2 to 31: [a-z][a-z0-9]+"
            )
        if self.resource == self.name:
            raise Refused("the resource needs a name of its own (--resource)")
        files = self.files()
        taken = [path for path in files if (root / path).exists()]
        if taken or (root / "services" / self.name).exists():
            raise Refused(f"the project has a {self.name} service already ({taken or 'services/'})")
        catalogue = root / "services" / "catalogue.py"
        model = _first_service(catalogue.read_text())
        edits = [
            (catalogue, self._catalogue),
            (root / "services" / "messaging.py", self._messaging),
            (root / "pyproject.toml", self._pyproject),
            *(
                (baseline, lambda text, m=model: self._baseline(text, m))
                for baseline in sorted((root / "deploy" / "checkov").glob("*.baseline.json"))
            ),
        ]
        # Every edit is worked out before anything is written: a refusal writes nothing.
        edited = [(path, change(path.read_text())) for path, change in edits]
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # nosec B701 - Python and proto sources, never HTML
        )
        for name, template in files.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(environment.get_template(template).render(**self.words))
        for path, text in edited:
            path.write_text(text)
        written = [*files, *(str(path.relative_to(root)) for path, _ in edits)]
        _tidy([root / name for name in written if name.endswith(".py")])
        return written

    def _catalogue(self, text: str) -> str:
        words = self.words
        settings = f"{words['Name']}Settings"
        imported = f"from services.{self.name}.config import {settings}\n"
        text = _after_last(text, r"^from services\.\w+\.config import \w+\n", imported, "catalogue")
        entry = (
            f'        Service("{self.name}", {settings}, '
            f'serves=("{self.name}.v1.{words["Name"]}Service",)),\n'
        )
        # `CATALOGUE = Catalogue((...services...), issuer=...)`: after the last service.
        services = r"^CATALOGUE = Catalogue\(\n    \(\n.*?^    \),\n"
        return _before(text, services, entry, "catalogue's CATALOGUE", closing=len("    ),\n"))

    def _messaging(self, text: str) -> str:
        imported = f"from services.{self.name} import consumers as {self.name}\n"
        text = _after_last(
            text, r"^from services\.\w+ import consumers as \w+\n", imported, "messaging"
        )
        entry = f'        "{self.name}": [{self.name}.EVENTS],\n'
        return _before(
            text, r"^def subscriptions\(\).*?^    \}\n", entry, "messaging's subscriptions()", 6
        )

    def _baseline(self, text: str, model: str) -> str:
        """checkov's accepted findings for the new service's workloads: those of the
        catalogue's first service, whose workloads the same generators write (their reasons
        are about the shape every service's has, not about one of them)."""
        document = json.loads(text)
        for checked in document["failed_checks"]:
            findings = checked["findings"]
            theirs = [f for f in findings if f["resource"].rsplit(".", 1)[-1] == model]
            findings += [
                {**f, "resource": f"{f['resource'].rsplit('.', 1)[0]}.{self.name}"} for f in theirs
            ]
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

    def _pyproject(self, text: str) -> str:
        """Its generated package where the others are named: the mypy override of generated
        code and the import-linter contracts (domain code and the runtime import none; no
        service imports another)."""
        n = self.name
        lists = [
            (r'(module = \["common\.\*",[^\]]*?)\]', f', "{n}.*"]', "mypy's generated code"),
            (r'(    "user", "inventory", "order", "notification",)', f' "{n}",', "domain code's"),
            (r'(forbidden_modules = \["services", "user"[^\]]*?)\]', f', "{n}"]', "the runtime's"),
            (
                r'(modules = \[\n    "services\.[a-z_]+",[^\]]*?)\n\]',
                f' "services.{n}",\n]',
                "independence",
            ),
        ]
        for pattern, added, what in lists:
            found = re.search(pattern, text)
            if found is None:
                raise Refused(f"pyproject.toml: {what} list not found; name {n} there by hand")
            text = text[: found.end(1)] + added + text[found.end() :]
        return text


def _first_service(catalogue: str) -> str:
    found = re.search(r"^CATALOGUE = .*?Service\(\s*\"(\w+)\"", catalogue, re.MULTILINE | re.DOTALL)
    if found is None:
        raise Refused("services/catalogue.py: no service in its CATALOGUE to model the new one on")
    return found.group(1)


def _tidy(paths: list[Path]) -> None:
    """The project's formatter over what was written, where it has ruff (its imports sorted,
    its lines wrapped as the project's settings say); without it, the files stay as rendered."""
    for command in (["check", "--fix", "--select", "I", "--quiet"], ["format", "--quiet"]):
        try:
            subprocess.run(  # nosec B603 - this interpreter, fixed arguments, our own files
                [sys.executable, "-m", "ruff", *command, *map(str, paths)],
                check=False,
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            return


def _after_last(text: str, pattern: str, line: str, where: str) -> str:
    found = list(re.finditer(pattern, text, re.MULTILINE))
    if not found:
        raise Refused(f"{where}: nowhere to import the new service ({pattern})")
    at = found[-1].end()
    return text[:at] + line + text[at:]


def _before(text: str, pattern: str, line: str, where: str, closing: int = 2) -> str:
    """`line` inserted before the last `closing` characters of the block `pattern` finds (its
    closing bracket's line)."""
    found = re.search(pattern, text, re.MULTILINE | re.DOTALL)
    if found is None:
        raise Refused(f"{where} not found")
    at = found.end() - closing
    return text[:at] + line + text[at:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ordermesh", description="The runtime's commands."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new-service", help="a new service, working and tested")
    new.add_argument("name", help="its name, a lowercase word (e.g. shipping)")
    new.add_argument("--resource", default="item", help="what its API records (item)")
    new.add_argument("--description", default="", help="one sentence: what the service is")
    new.add_argument("--root", type=Path, default=Path.cwd(), help="the project (here)")
    args = parser.parse_args(argv)
    service = NewService(args.name, args.resource, args.description)
    try:
        written = service.make(args.root)
    except Refused as exc:
        print(f"new-service: {exc}", file=sys.stderr)
        return 2
    print("\n".join(f"  {path}" for path in written))
    print(f"next: make gen, then make test-unit and make up: the {args.name} service is routed "
          f"at /v1/{service.words['resources']}")  # fmt: skip
    return 0
