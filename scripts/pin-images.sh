#!/usr/bin/env bash
# Pins every default image by digest: for each `image: name:tag[@sha256:...]` of assets/images/compose.yaml,
# asks the registry what the tag points at now and writes `name:tag@sha256:<digest>` in its place.
# Run it where registries answer (a workstation, CI), after a tag moves in that file, and commit the result:
#
#     scripts/pin-images.sh              # all images
#     scripts/pin-images.sh litellm      # only these services
#
# Uses `crane digest` when crane is installed, else `docker buildx imagetools inspect`. The digest is the
# one of the tag's manifest list, so every platform's image is pinned at once.
set -euo pipefail
cd "$(dirname "$0")/.."
FILE=${PIN_IMAGES_FILE:-assets/images/compose.yaml}  # another file for the tests

digest_of() {
  if command -v crane >/dev/null; then
    crane digest "$1"
  else
    docker buildx imagetools inspect "$1" --format '{{json .Manifest}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])'
  fi
}

python3 - "$FILE" "$@" <<'PY' | while read -r service ref; do
import re, sys
import yaml
path, only = sys.argv[1], set(sys.argv[2:])
for name, svc in yaml.safe_load(open(path))["services"].items():
    if not only or name in only:
        print(name, svc["image"].split("@", 1)[0])
PY
  digest=$(digest_of "$ref")
  [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "pin-images: $ref: no digest (got '$digest')" >&2; exit 1; }
  python3 - "$FILE" "$service" "$ref@$digest" <<'PY'
import re, sys
path, service, pinned = sys.argv[1:]
text = open(path).read()
# The image line under this service only, whatever digest it had.
new, n = re.subn(rf"(?m)^(  {re.escape(service)}:\n    image: )\S+$", lambda m: m.group(1) + pinned, text)
if n != 1:
    sys.exit(f"pin-images: no image line for {service} in {path}")
open(path, "w").write(new)
PY
  echo "pin-images: $service -> $ref@$digest"
done
