#!/usr/bin/env bash
# Publishes zramd as one self-contained executable for linux-x64 (no .NET needed where it runs): what the .deb
# installs as /usr/bin/zramd and what the VM tests put in the guest.
#   scripts/publish.sh OUTDIR   -> OUTDIR/zramd
# ReadyToRun: precompiled code, so start-up does not wait for the JIT (seconds under emulation).
# Trimmed (partial: only framework assemblies that declare themselves trimmable; Serilog and the other
# packages are kept whole) to keep it near 25 MB. The trim analysis warns about those reflection-using packages
# being kept, so its warnings are off here; the package test runs the published daemon to prove it works.
# Version: packaging/VERSION, the .deb's version, so that `zramd --version` names the package it came in.
# NativeAOT would start faster still, but its runtime pack is not obtainable from the registry here.
set -euo pipefail
out=${1:?usage: scripts/publish.sh OUTDIR}
# OUTDIR is relative to where the script was started, not to the repository it moves to.
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
dotnet publish src/ZramDaemon/ZramDaemon.csproj -c Release -r linux-x64 --self-contained -nologo -v:q \
  -p:PublishSingleFile=true -p:PublishReadyToRun=true -p:PublishTrimmed=true -p:TrimMode=partial -p:SuppressTrimAnalysisWarnings=true \
  -p:DebugType=none -p:Version="$(cat packaging/VERSION)" -o "$out" >&2
test -x "$out/zramd"
