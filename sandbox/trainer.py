"""The sandbox's tiny CPU "training", run as a GPU job's command in ``gpu-estate/sandbox-trainer``.

    python3 /trainer.py --epochs 200 [--pace SECONDS] [--sleep SECONDS]

Reads ``x y`` pairs from every file under ``/job/inputs``, fits ``y = a*x + b`` by gradient descent, writes a
checkpoint every 50 epochs (``/job/outputs/checkpoints/epoch-<n>.json``) and the model, printing its progress:
``/job/outputs/model.json`` (its weights and the loss) and ``/job/outputs/model.gguf``, the project's tiny
llama-architecture GGUF (sandbox/tiny_model.py's writer) carrying the fitted weights and loss as
``gpu_estate.trained.*`` keys, which the real Ollama loads; its sha256 beside it in ``model.gguf.sha256``
(``sha256sum``'s line), so a stack can name the file and its digest in ``gguf_models``. ``--pace`` makes each
epoch take that long (a job long enough to be preempted between checkpoints). With ``--sleep`` it then waits
that long (a job that outlives its caps). With ``ESTATE_JOB_RESUMED`` set it starts from the last checkpoint.
The image is the sandbox's Debian Python with the program's ``gguf`` and numpy (scripts/build-trainer-image.sh).
"""
import argparse
import hashlib
import json
import os
import time
from pathlib import Path

from sandbox.tiny_model import write_tiny_gguf

INPUTS, OUTPUTS = Path("/job/inputs"), Path("/job/outputs")


def data():
    pairs = []
    for path in sorted(p for p in INPUTS.rglob("*") if p.is_file()):
        for line in path.read_text().splitlines():
            if line.strip():
                x, y = map(float, line.split())
                pairs.append((x, y))
    return pairs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--lr", type=float, default=float(os.environ.get("LR", "0.01")))
    p.add_argument("--pace", type=float, default=0.0)
    p.add_argument("--sleep", type=float, default=0.0)
    args = p.parse_args()
    pairs = data()
    a = b = 0.0
    start = 0
    ckpts = OUTPUTS / "checkpoints"
    if os.environ.get("ESTATE_JOB_RESUMED") and ckpts.exists():
        last = max(ckpts.glob("epoch-*.json"), key=lambda f: int(f.stem.split("-")[1]), default=None)
        if last:
            state = json.loads(last.read_text())
            a, b, start = state["a"], state["b"], state["epoch"]
            print(f"resumed at epoch {start}", flush=True)
    n = max(1, len(pairs))
    loss = 0.0
    for epoch in range(start + 1, args.epochs + 1):
        ga = gb = loss = 0.0
        for x, y in pairs:
            err = a * x + b - y
            ga, gb, loss = ga + 2 * err * x / n, gb + 2 * err / n, loss + err * err / n
        a, b = a - args.lr * ga, b - args.lr * gb
        if args.pace:
            time.sleep(args.pace)
        if epoch % 50 == 0:
            ckpts.mkdir(parents=True, exist_ok=True)
            (ckpts / f"epoch-{epoch}.json").write_text(json.dumps({"epoch": epoch, "a": a, "b": b, "loss": loss}))
            print(f"epoch {epoch}: loss {loss:.6f}", flush=True)
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    (OUTPUTS / "model.json").write_text(json.dumps({"a": a, "b": b, "loss": loss, "samples": len(pairs)}))
    gguf = write_tiny_gguf(OUTPUTS / "model.gguf", trained={"a": a, "b": b, "loss": loss})
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    (OUTPUTS / "model.gguf.sha256").write_text(f"{digest}  model.gguf\n")
    print(f"trained on {len(pairs)} samples: a={a:.4f} b={b:.4f} loss={loss:.6f}", flush=True)
    print(f"wrote model.gguf ({gguf.stat().st_size} bytes, sha256 {digest})", flush=True)
    if args.sleep:
        time.sleep(args.sleep)


if __name__ == "__main__":
    main()
