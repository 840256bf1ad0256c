#!/usr/bin/env bash
# Builds zramd in Release and runs it; arguments go to zramd (none: the embedded default device).
# It stays in the caller's directory, so that relative paths in the arguments (--config my.conf) mean what they say.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib/prereqs.sh
. "$root/scripts/lib/prereqs.sh"
ensure_runtime_prereqs
# The build runs in the repository, where its global.json and NuGet.Config apply.
(cd "$root" && dotnet build src/ZramDaemon/ZramDaemon.csproj -c Release -nologo -v:q >&2)
exec dotnet "$root/src/ZramDaemon/bin/Release/net10.0/zramd.dll" "$@"
