#!/usr/bin/env bash
# The Pulumi engine parts the estate runs on, in one bin directory the engine finds them in:
#   pulumi                           the CLI (v3.259.0)
#   pulumi-language-python           the official Python language host, with the official scripts it
#   pulumi-language-python-exec      execs to run the program and
#   pulumi-resource-pulumi-python    to host the program's dynamic providers
#   pulumi-resource-command          the `command` provider 1.2.1 (what pulumi-command==1.2.1 asks for)
#
# Two ways, chosen by what the machine has:
# - A Pulumi CLI already installed (a user's machine: `pulumi version` answers) is used as it is, with
#   the language host its installer brought; the command plugin is installed the normal way
#   (`pulumi plugin install resource command 1.2.1`). Nothing is built.
# - Otherwise (these machines reach the Go module proxy, not GitHub or get.pulumi.com) everything is
#   built from source into a cache outside the clone: the CLI from the proxy, the language host and the
#   command provider from the unmodified upstream sources in ../shared/vendor (GPU_ESTATE_VENDOR), which
#   the proxy does not serve.
# Prints the bin directory and records it in $CACHE/pulumi-bin for the Makefile and the sandbox. A
# second run with the cache present builds nothing.
set -euo pipefail

PULUMI_VERSION="${PULUMI_VERSION:-3.259.0}"
COMMAND_VERSION="1.2.1"
CACHE="${GPU_ESTATE_CACHE:-$HOME/.cache/gpu-estate}"
PREFIX="$CACHE/pulumi-v$PULUMI_VERSION"
BIN="$PREFIX/bin"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENDOR="${GPU_ESTATE_VENDOR:-$HERE/../../shared/vendor}"
mkdir -p "$CACHE"

say() { echo "build-pulumi: $*" >&2; }

# The other resource plugins a stack may need, at the versions of requirements.txt's SDKs: random (the
# gateway's master key, pgvector's password, the edge's secrets: nearly every stack), and aws, gcp and
# cloudflare (AWS or GCP nodes and buckets, a Cloudflare edge). A preview fails on a missing one.
plugin_version() { sed -n "s/^pulumi-$1==//p" "$HERE/../requirements.txt"; }
RANDOM_VERSION="$(plugin_version random)"
say_plugins() {
  say "$1: pulumi plugin install resource random $RANDOM_VERSION"
  say "  and for stacks with AWS nodes or S3 buckets, GCP nodes or GCS buckets, a Cloudflare edge:"
  for p in aws gcp cloudflare; do say "  pulumi plugin install resource $p $(plugin_version "$p")"; done
}

# A user's own CLI: use it and its host, install the command and random plugins as a user would.
installed="$(command -v pulumi || true)"
if [ -n "$installed" ] && [ "$(dirname "$installed")" != "$BIN" ] && pulumi version >/dev/null 2>&1; then
  say "using the installed Pulumi CLI $(pulumi version) at $installed"
  pulumi plugin ls 2>/dev/null | grep -Eq "^command +resource +$COMMAND_VERSION" \
    || pulumi plugin install resource command "$COMMAND_VERSION" >&2
  pulumi plugin ls 2>/dev/null | grep -Eq "^random +resource +$RANDOM_VERSION" \
    || pulumi plugin install resource random "$RANDOM_VERSION" >&2 \
    || say_plugins "WARNING: could not install the random plugin; install it where GitHub answers"
  say "the other plugins download on a stack's first preview; offline, install them first:"
  for p in aws gcp cloudflare; do say "  pulumi plugin install resource $p $(plugin_version "$p")"; done
  dirname "$installed" | tee "$CACHE/pulumi-bin"
  exit 0
fi

command -v go >/dev/null || { say "Go is required to build the Pulumi CLI here"; exit 1; }
export GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=mod"
export CGO_ENABLED=0
mkdir -p "$BIN"
VERSION_FLAG="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"

if [ ! -x "$BIN/pulumi" ]; then
  SRC="$PREFIX/src"
  mkdir -p "$SRC"
  cd "$SRC"
  [ -f go.mod ] || go mod init gpu-estate.local/pulumi-build >&2
  # pkg/go.mod carries replace directives, so `go install pkg@version` refuses; requiring it from a
  # module of our own (as a tool) resolves the same versions without the replaces.
  say "building the Pulumi CLI v$PULUMI_VERSION from the Go module proxy (about 10 minutes cold)"
  go get -tool "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@v$PULUMI_VERSION" >&2
  go get "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" >&2
  go build -trimpath -tags osusergo,grpcnotrace -ldflags "-s -w $VERSION_FLAG" -o "$BIN/pulumi.tmp" \
    github.com/pulumi/pulumi/pkg/v3/cmd/pulumi >&2
  mv "$BIN/pulumi.tmp" "$BIN/pulumi"
fi

HOST_SRC="$VENDOR/pulumi-language-python-v$PULUMI_VERSION"
COMMAND_SRC="$VENDOR/pulumi-command-v$COMMAND_VERSION"
# An ELF binary, not a wrapper script an earlier set-up of this project installed under that name.
built() { [ -x "$1" ] && [ "$(head -c 4 "$1" | tail -c 3)" = "ELF" ]; }
# from_vendor <what> <source dir> <module subdir> <binary> <package> <ldflags> [go mod edit args...]:
# copy the upstream source into the cache (the vendor tree stays untouched) and build one binary.
from_vendor() {
  local what="$1" src="$2" sub="$3" out="$4" pkg="$5" ldflags="$6"; shift 6
  built "$BIN/$out" && return 0
  # Without the sources the engine tests skip and say so; everything else still runs.
  [ -d "$src" ] || { say "WARNING: no $what source at $src (set GPU_ESTATE_VENDOR): not built"; return 0; }
  say "building $what from $src"
  local work="$PREFIX/src-$out"
  rm -rf "$work" && mkdir -p "$work" && cp -R "$src/." "$work/"
  (cd "$work/$sub" && { [ $# -eq 0 ] || go mod edit "$@"; } \
    && go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$out.tmp" "$pkg" >&2)
  mv "$BIN/$out.tmp" "$BIN/$out"
}
# Upstream points pkg/sdk at the monorepo; here they come from the proxy at the CLI's version.
from_vendor "the official Python language host v$PULUMI_VERSION" "$HOST_SRC" . pulumi-language-python . \
  "$VERSION_FLAG" -dropreplace github.com/pulumi/pulumi/pkg/v3 -dropreplace github.com/pulumi/pulumi/sdk/v3 \
  -require "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION" -require "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION"
from_vendor "the command provider v$COMMAND_VERSION" "$COMMAND_SRC" provider pulumi-resource-command \
  ./cmd/pulumi-resource-command "-X github.com/pulumi/pulumi-command/provider/pkg/version.Version=$COMMAND_VERSION"
for script in pulumi-language-python-exec pulumi-resource-pulumi-python; do
  if [ -f "$HOST_SRC/$script" ]; then
    cmp -s "$HOST_SRC/$script" "$BIN/$script" || install -m 0755 "$HOST_SRC/$script" "$BIN/$script"
  elif [ ! -x "$BIN/$script" ]; then
    say "WARNING: no $script in $HOST_SRC: not installed"
  fi
done

# Left by earlier set-ups: the project's own language host, replaced by the official one above.
rm -f "$BIN/language_host.py"
# The plugins the vendor tree does not hold come from GitHub, which this build does not reach: say how.
ls "${PULUMI_HOME:-$HOME/.pulumi}/plugins" 2>/dev/null | grep -q "^resource-random-v$RANDOM_VERSION\$" \
  || say_plugins "NOTE: no random plugin here; a stack with a gateway over SSH, an edge or pgvector needs it"
echo "$BIN" | tee "$CACHE/pulumi-bin"
