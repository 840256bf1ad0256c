#!/usr/bin/env bash
# Builds zramd in Release and runs it; arguments go to zramd (none: the embedded default device).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/prereqs.sh
. scripts/lib/prereqs.sh
ensure_runtime_prereqs
dotnet build src/ZramDaemon/ZramDaemon.csproj -c Release -nologo -v:q >&2
exec dotnet src/ZramDaemon/bin/Release/net10.0/zramd.dll "$@"
