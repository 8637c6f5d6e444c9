"""Adapters as OCI artifacts: push and pull against a real registry on loopback."""

from __future__ import annotations

import base64
import io
import json
import tarfile

import pytest

from kaito_runtime import oci


@pytest.fixture
def adapter_dir(tmp_path):
    path = tmp_path / "adapter"
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (path / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 40)
    (path / "tokenizer.json").write_text("{}")
    return path


def test_push_pull_round_trip_with_password(oci_registry, adapter_dir, tmp_path):
    auth = oci.RegistryAuth(username=oci_registry.username, password=oci_registry.password)
    ref = oci_registry.ref("adapters/phi3-tuned")
    digest = oci.push_adapter(adapter_dir, ref, auth, model_name="phi-3-mini-4k-instruct")
    assert digest.startswith("sha256:")
    manifest = oci.get_manifest(ref, auth)
    assert manifest["annotations"][oci.MODEL_ANNOTATION] == "phi-3-mini-4k-instruct"
    titles = sorted(layer["annotations"]["org.opencontainers.image.title"] for layer in manifest["layers"])
    assert titles == ["adapter_config.json", "adapter_model.safetensors", "tokenizer.json"]
    assert manifest["config"]["mediaType"] == oci.ADAPTER_CONFIG_MEDIA_TYPE
    out = oci.pull_adapter(ref, tmp_path / "pulled", auth)
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert (out / name).read_bytes() == (adapter_dir / name).read_bytes()


def test_docker_config_file_auth_and_env(oci_registry, adapter_dir, tmp_path, monkeypatch):
    token = base64.b64encode(f"{oci_registry.username}:{oci_registry.password}".encode()).decode()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {oci_registry.host: {"auth": token}}}))
    auth = oci.auth_from_env(str(config))
    ref = oci_registry.ref("adapters/from-config", "v2")
    oci.push_adapter(adapter_dir, ref, auth, model_name="m")
    assert (oci.pull_adapter(ref, tmp_path / "a", auth) / "adapter_config.json").is_file()
    monkeypatch.setenv("KAITO_REGISTRY_USERNAME", oci_registry.username)
    monkeypatch.setenv("KAITO_REGISTRY_PASSWORD", oci_registry.password)
    env_auth = oci.auth_from_env(None)
    assert env_auth.username == oci_registry.username and oci_registry.password not in repr(env_auth)
    assert (oci.pull_adapter(ref, tmp_path / "b", env_auth) / "adapter_model.safetensors").is_file()


def test_wrong_password_is_a_clear_error_without_the_secret(oci_registry, adapter_dir, monkeypatch):
    monkeypatch.setenv("KAITO_REGISTRY_PASSWORD", "wrong-pass-123")
    monkeypatch.setenv("KAITO_REGISTRY_USERNAME", oci_registry.username)
    ref = oci_registry.ref("adapters/denied")
    with pytest.raises(oci.OciError) as info:
        oci.push_adapter(adapter_dir, ref, oci.auth_from_env(None))
    message = str(info.value)
    assert ref in message and "credentials" in message and "wrong-pass-123" not in message


def test_pull_of_a_kaito_style_image_and_of_a_non_adapter(oci_registry, tmp_path):
    """Kaito's own adapter images keep the adapter under /data in a tar layer."""
    import oras.client

    auth = oci.RegistryAuth(username=oci_registry.username, password=oci_registry.password)
    layer = tmp_path / "layer.tar.gz"
    with tarfile.open(layer, "w:gz") as archive:
        for name, data in {
            "data/adapter_config.json": b'{"r": 4}',
            "data/adapter_model.safetensors": b"w" * 99,
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    client = oras.client.OrasClient(hostname=oci_registry.host, insecure=True, auth_backend="basic")
    client.auth.set_basic_auth(oci_registry.username, oci_registry.password)
    ref = oci_registry.ref("kaito/adapter-image")
    client.push(
        target=ref,
        files=[f"{layer}:application/vnd.oci.image.layer.v1.tar+gzip"],
        disable_path_validation=True,
        quiet=True,
    )
    out = oci.pull_adapter(ref, tmp_path / "out", auth)
    assert (out / "adapter_config.json").read_text() == '{"r": 4}'
    assert (out / "adapter_model.safetensors").read_bytes() == b"w" * 99

    data_dir = tmp_path / "dataset"
    data_dir.mkdir()
    (data_dir / "train.jsonl").write_text('{"text": "hi"}\n')
    data_ref = oci_registry.ref("kaito/dataset")
    oci.push_adapter(data_dir, data_ref, auth)
    assert (
        oci.pull_data(data_ref, tmp_path / "pulled-data", auth) / "train.jsonl"
    ).read_text() == '{"text": "hi"}\n'
    with pytest.raises(oci.OciError, match=r"no adapter_config\.json"):
        oci.pull_adapter(data_ref, tmp_path / "nope", auth)


def test_bad_references():
    with pytest.raises(oci.OciError, match="name the registry host"):
        oci.push_adapter(".", "just-a-name:v1")
    with pytest.raises(oci.OciError, match="registry_auth_file /nonexistent"):
        oci.auth_from_env("/nonexistent/config.json")
