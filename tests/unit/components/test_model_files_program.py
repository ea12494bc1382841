"""The program registers one model file resource per (node, workload, file) with where the file lives on the
node, how the node is reached over SSH (its pinned host key) and, for a gated file, only the path of the
node's secret file: the token itself is in no input. Editing the files changes nothing the machine is
launched with."""
import copy

from tests.mocks import MOCK_HOST_KEY, run_program, stack_config

FILE = "pulumi-python:dynamic/files:ModelFile"
GPU = "pulumi-python:dynamic/gpu:Instance"
FLUX = {"name": "flux1-dev.safetensors", "kind": "unet", "size_gb": 23.8, "sha256": "a" * 64, "gated": True,
        "url": "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/flux1-dev.safetensors"}
VAE = {"name": "ae.safetensors", "kind": "vae", "size_gb": 0.3, "sha256": "b" * 64, "url": "https://example.com/ae.safetensors"}


def with_files(*files) -> dict:
    config = copy.deepcopy(stack_config("prod"))
    comfy = config["gpu-estate:nodes"]["qwen"]["workloads"]["comfyui"]
    comfy["checkpoints"] = list(files)
    comfy["secret_env"] = ["HF_TOKEN"]
    config["gpu-estate:HF_TOKEN"] = "hf_plantedTokenValue42"
    return config


def test_each_file_is_its_own_resource_reached_over_ssh_with_the_token_left_on_the_node():
    prod = run_program(with_files(FLUX, VAE), stack="prod")
    files = {r.name: r.inputs for r in prod.of_type(FILE)}
    assert set(files) == {"qwen-comfyui-unet-flux1-dev.safetensors", "qwen-comfyui-vae-ae.safetensors"}
    flux = files["qwen-comfyui-unet-flux1-dev.safetensors"]
    assert flux["path"] == "/root/ComfyUI/models/unet/flux1-dev.safetensors"  # inside the Vast.ai container
    assert flux["token_file"] == "/opt/estate/secrets/comfyui.env"
    assert files["qwen-comfyui-vae-ae.safetensors"].get("token_file") is None  # not Hugging Face: no token
    assert flux["ssh"] == {"host": "198.51.100.7", "port": 22, "user": "root", "host_key": MOCK_HOST_KEY,
                           "key_env": "ESTATE_SSH_PRIVATE_KEY"}
    assert flux["instance"] == "vastai:i-1" and flux["active"] is True and flux["sha256"] == "a" * 64
    assert "hf_plantedTokenValue42" not in repr([r.inputs for r in prod.of_type(FILE)])


def test_editing_the_files_leaves_the_machines_launch_as_it_was():
    def launch(config):
        (qwen,) = [r for r in run_program(config, stack="prod").of_type(GPU) if r.name == "qwen-instance"]
        return qwen.inputs["launch"]

    assert launch(with_files(FLUX, VAE)) == launch(with_files(VAE)) == launch(with_files())
