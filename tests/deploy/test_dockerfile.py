"""The Dockerfile's structure: we cannot build images here, so its promises are checked as text.

Multi-stage; every base pinned by digest; the final stage runs as a fixed non-root UID on a base
with no shell, package manager or compiler, holds the libtss2 runtime, the virtual environment and
the signed SBOM; OCI labels carry version and source; the build stage installs with the same script
the runtime-environment test runs.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from tests.deploy.conftest import ROOT

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    return parser


def stages(parser: DockerfileParser) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(instruction)
    return out


def stage_named(parser: DockerfileParser, name: str) -> list[dict[str, Any]]:
    for stage in stages(parser):
        if stage[0]["value"].split()[-1] == name:
            return stage
    raise AssertionError(f"no stage {name}")


def args(parser: DockerfileParser) -> dict[str, str]:
    found = {}
    for instruction in parser.structure:
        if instruction["instruction"] == "ARG" and "=" in instruction["value"]:
            key, _, value = instruction["value"].partition("=")
            found[key] = value
    return found


def test_multi_stage_with_named_stages(dockerfile: DockerfileParser) -> None:
    names = [stage[0]["value"].split()[-1] for stage in stages(dockerfile)]
    assert names == ["build", "sbom", "tss", "runtime"]


def test_every_base_image_is_pinned_by_digest(dockerfile: DockerfileParser) -> None:
    declared = args(dockerfile)
    for stage in stages(dockerfile):
        base = stage[0]["value"].split()[0]
        if base.startswith("${"):
            base = declared[base.strip("${}")]
        elif base in ("build",):
            continue
        assert DIGEST.search(base), f"{base} is not pinned by digest"
    assert "python3-debian12" in declared["RUNTIME_IMAGE"], "the runtime is distroless Python"
    assert "digest" in (ROOT / "Dockerfile").read_text().split("ARG DEBIAN_IMAGE")[0]


def test_runtime_stage(dockerfile: DockerfileParser) -> None:
    runtime = stage_named(dockerfile, "runtime")
    kinds = [i["instruction"] for i in runtime]
    assert "RUN" not in kinds, "the runtime stage has no shell to RUN with"
    (user,) = [i["value"] for i in runtime if i["instruction"] == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), "a fixed numeric UID"
    assert gid.isdigit(), "a fixed numeric GID"
    assert int(uid) >= 10000, "non-root, above host UIDs"
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert "--from=build /opt/venv /opt/venv" in copies
    assert "--from=tss /staging/ /" in copies
    assert any(c.startswith("--from=sbom /sbom/") for c in copies)
    (entrypoint,) = [i["value"] for i in runtime if i["instruction"] == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["/opt/venv/bin/ohttp-gateway"]
    env = " ".join(i["value"] for i in runtime if i["instruction"] == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "a read-only root filesystem: no bytecode writes"


def test_oci_labels(dockerfile: DockerfileParser) -> None:
    labels = dockerfile.labels
    for key in ("version", "source", "revision", "title", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    # The default version follows the package and the chart's appVersion.
    version = args(dockerfile)["VERSION"]
    assert labels["org.opencontainers.image.version"] == version
    assert f'version = "{version}"' in (ROOT / "pyproject.toml").read_text()
    assert f'appVersion: "{version}"' in (ROOT / "charts/ohttp-gateway/Chart.yaml").read_text()


def test_compilers_only_in_the_build_stage(dockerfile: DockerfileParser) -> None:
    for name in ("sbom", "tss", "runtime"):
        text = " ".join(i["value"] for i in stage_named(dockerfile, name))
        # sbom derives from build, but installs no compiler of its own.
        assert not re.search(r"\b(gcc|g\+\+|build-essential|clang)\b", text), name
    build = " ".join(i["value"] for i in stage_named(dockerfile, "build"))
    assert "gcc" in build
    assert "libtss2-dev" in build


def test_libtss2_runtime_is_shipped(dockerfile: DockerfileParser) -> None:
    tss = " ".join(i["value"] for i in stage_named(dockerfile, "tss"))
    for library in ("libtss2-esys-3.0.2-0", "libtss2-tctildr0", "libtss2-tcti-device0"):
        assert library in tss


def test_build_stage_runs_the_tested_install_script(dockerfile: DockerfileParser) -> None:
    build = stage_named(dockerfile, "build")
    runs = [i["value"] for i in build if i["instruction"] == "RUN"]
    assert "scripts/build-runtime-venv /opt/venv /src" in runs
    env = " ".join(i["value"] for i in build if i["instruction"] == "ENV")
    assert "PIP_NO_CACHE_DIR=1" in env, "no pip cache in the image layers"


def test_sbom_stage_signs_with_a_build_secret(dockerfile: DockerfileParser) -> None:
    sbom = " ".join(i["value"] for i in stage_named(dockerfile, "sbom"))
    assert "--require-hashes" in sbom
    assert "tools/sbom/requirements.txt" in sbom
    assert "--mount=type=secret,id=sbom-signing-key,required=true" in sbom
    assert "-m tools.sbom generate" in sbom
    assert "--environment /opt/venv" in sbom
