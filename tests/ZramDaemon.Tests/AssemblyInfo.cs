using System.Runtime.Versioning;

// zramd is Linux-only (see src/ZramDaemon/Program.cs); so are its tests.
[assembly: SupportedOSPlatform("linux")]
